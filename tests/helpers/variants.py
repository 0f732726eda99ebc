"""Helpers for the export tests: tiny models as the pipeline produces them (dense, unstructured-, width- and depth-pruned),
saved with a ChatML chat template so a Modelfile can be written."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.tiny import TINY_CONFIG, tiny_llama

#: A byte-level BPE with a few real merges (GGUF's tokenizer needs merges), the specials
#: after them; the tiny models get this vocabulary size.
MERGES = [
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("Ġ", "a"),
    ("Ġt", "he"),
    ("e", "r"),
    ("Ġ", "s"),
    ("o", "n"),
]
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VOCAB = 256 + len(MERGES) + len(SPECIALS)
IDS = {"unk": 256 + len(MERGES), "bos": 256 + len(MERGES) + 1, "eos": 256 + len(MERGES) + 2}


def bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    out = PreTrainedTokenizerFast(tokenizer_object=tok)
    out.add_special_tokens(
        {
            "unk_token": SPECIALS[0],
            "bos_token": SPECIALS[1],
            "eos_token": SPECIALS[2],
            "pad_token": SPECIALS[2],
        }
    )
    assert len(out) == VOCAB and out.eos_token_id == IDS["eos"]
    return out


def variant_llama(**overrides):
    return tiny_llama(
        vocab_size=VOCAB,
        bos_token_id=IDS["bos"],
        eos_token_id=IDS["eos"],
        pad_token_id=IDS["eos"],
        **overrides,
    )


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

CLINICAL_TEXT = (
    "A 64-year-old man presented with chest pain radiating to the left arm; troponin was "
    "elevated and the ECG showed ST elevation. Known type 2 diabetes on metformin."
)

CALIB = [
    CLINICAL_TEXT,
    "Fever, dysuria and flank pain for three days. Urine culture grew E. coli.",
] * 8


def chat_tokenizer():
    tok = bpe_tokenizer()
    tok.chat_template = CHATML
    return tok


def _prune(model, **prune):
    from medprune.config import PruneConfig
    from medprune.prune.engine import prune_model

    prune.setdefault("calibration", {"num_samples": 4, "seq_len": 32, "batch_size": 4})
    return prune_model(model, chat_tokenizer(), PruneConfig(**prune), calib_texts=CALIB).model


def build_variant(kind: str):
    """(model, tokenizer) for one of dense / unstructured / width / depth."""
    if kind == "dense":
        return variant_llama(), chat_tokenizer()
    if kind == "unstructured":
        return _prune(variant_llama(), method="magnitude", sparsity=0.5), chat_tokenizer()
    if kind == "width":
        # keeps 2 of 4 query heads (1 KV group), MLP 64 and hidden 48: head_dim 16 is no
        # longer hidden_size / heads (24), the shape Ollama's own import gets wrong
        model = _prune(
            variant_llama(),
            method="width",
            structured={
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_mode": "kv_groups",
                "intermediate_size": 64,
                "prune_hidden": True,
                "hidden_size": 48,
                "channel_multiple": 16,
            },
        )
        return model, chat_tokenizer()
    if kind == "depth":
        model = variant_llama(num_hidden_layers=3)
        return _prune(model, method="depth", structured={"layers_to_remove": [1]}), chat_tokenizer()
    raise ValueError(kind)


def save_variants(root: Path, kinds=("dense", "unstructured", "width", "depth")) -> dict[str, Path]:
    from medprune.load.model import save_model

    return {kind: save_model(*build_variant(kind), root / kind) for kind in kinds}


__all__ = [
    "CHATML",
    "CLINICAL_TEXT",
    "TINY_CONFIG",
    "bpe_tokenizer",
    "build_variant",
    "chat_tokenizer",
    "save_variants",
    "variant_llama",
]
