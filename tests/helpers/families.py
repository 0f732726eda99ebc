"""Tiny random models of every family the GGUF export writes, built from a config (dense and
width-pruned), with a SentencePiece tokenizer trained here on clinical text (llama.cpp's
converter reads ``tokenizer.model`` for every family; a byte-level BPE tokenizer made up for a
test has a pre-tokenizer the converter cannot identify)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from tests.helpers.fixture_data import TEXTS
from tests.helpers.tiny import TINY_CONFIG
from tests.helpers.variants import CALIB, CLINICAL_TEXT, chat_tokenizer

SP_VOCAB = 320

#: family -> (transformers config class name, config overrides)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {}),
    "llama3-rope": (
        "LlamaConfig",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        },
    ),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    # Gemma checkpoints tie the output layer to the embedding (llama.cpp's Gemma / Gemma 2
    # graphs always do)
    "gemma": ("GemmaConfig", {"head_dim": 16, "tie_word_embeddings": True}),
    "gemma2": (
        "Gemma2Config",
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 16,
            "tie_word_embeddings": True,
        },
    ),
    "gemma3_text": (
        "Gemma3TextConfig",
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 16,
            "tie_word_embeddings": True,
        },
    ),
    "phi3": ("Phi3Config", {"pad_token_id": 2}),
}
_CAUSAL_LM = {
    "LlamaConfig": "LlamaForCausalLM",
    "MistralConfig": "MistralForCausalLM",
    "Qwen2Config": "Qwen2ForCausalLM",
    "Qwen3Config": "Qwen3ForCausalLM",
    "GemmaConfig": "GemmaForCausalLM",
    "Gemma2Config": "Gemma2ForCausalLM",
    "Gemma3TextConfig": "Gemma3ForCausalLM",
    "Phi3Config": "Phi3ForCausalLM",
}

#: width pruning per family: Gemma keeps its hidden size (the embedding is scaled by it)
WIDTH_HEADS_MLP = {
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_mode": "kv_groups",
    "intermediate_size": 64,
}
WIDTH_HIDDEN = {**WIDTH_HEADS_MLP, "prune_hidden": True, "hidden_size": 48, "channel_multiple": 16}


#: Qwen2 / Phi-3 in llama.cpp need heads x head_dim == hidden: 2 x 16 = 32
WIDTH_SQUARE = {**WIDTH_HIDDEN, "hidden_size": 32}


def width_settings(family: str) -> dict[str, Any]:
    if family.startswith("gemma"):
        return WIDTH_HEADS_MLP
    return WIDTH_SQUARE if family in ("qwen2", "phi3") else WIDTH_HIDDEN


def sentencepiece_model() -> bytes:
    """A SentencePiece BPE model (byte fallback, <unk>=0, <s>=1, </s>=2) trained on clinical text."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((TEXTS + CALIB + [CLINICAL_TEXT]) * 4),
        model_writer=buf,
        vocab_size=SP_VOCAB,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return buf.getvalue()


def build_family(family: str, seed: int = 0, **extra: Any):
    import transformers as tf

    config_cls, overrides = FAMILIES[family]
    cfg = {
        **TINY_CONFIG,
        "vocab_size": SP_VOCAB,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": None,
        "tie_word_embeddings": False,
        "initializer_range": 0.1,  # peaked next-token distributions: argmax is meaningful
        **overrides,
        **extra,
    }
    torch.manual_seed(seed)
    config = getattr(tf, config_cls)(**cfg)
    return getattr(tf, _CAUSAL_LM[config_cls])(config).eval()


def prune_width(model, family: str, settings: dict[str, Any] | None = None):
    from medprune.config import PruneConfig
    from medprune.prune.engine import prune_model

    cfg = PruneConfig(
        method="width",
        structured=settings or width_settings(family),
        calibration={"num_samples": 4, "seq_len": 32, "batch_size": 4},
    )
    return prune_model(model, chat_tokenizer(), cfg, calib_texts=CALIB).model


def prune_depth(model):
    """Removes layer 2 of 7: Gemma's sliding/full pattern (period 2 or 6) is broken, as depth
    pruning does to real checkpoints."""
    from medprune.config import PruneConfig
    from medprune.prune.engine import prune_model

    cfg = PruneConfig(
        method="depth",
        structured={"layers_to_remove": [2]},
        calibration={"num_samples": 4, "seq_len": 32, "batch_size": 4},
    )
    return prune_model(model, chat_tokenizer(), cfg, calib_texts=CALIB).model


def save_family(root: Path, family: str, kind: str, sp_model: bytes) -> Path:
    """``root/FAMILY-KIND``: config.json, safetensors, tokenizer.model, tokenizer_config.json.
    ``kind``: dense, width (:func:`width_settings`) or depth (7 layers, layer 2 removed)."""
    if kind == "depth":
        model = prune_depth(build_family(family, num_hidden_layers=7))
    elif kind == "width":
        model = prune_width(build_family(family), family)
    elif kind == "dense":
        model = build_family(family)
    else:
        raise ValueError(kind)
    out = root / f"{family}-{kind}"
    model.save_pretrained(out)
    write_sentencepiece_tokenizer(out, sp_model)
    return out


def write_sentencepiece_tokenizer(model_dir: Path, sp_model: bytes) -> None:
    """``tokenizer.model`` and a LlamaTokenizer ``tokenizer_config.json`` (no chat template)."""
    (model_dir / "tokenizer.model").write_bytes(sp_model)
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "tokenizer_class": "LlamaTokenizer",
            }
        )
    )
