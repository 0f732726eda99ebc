"""A multimodal Gemma 3 checkpoint (MedGemma 4B's layout): its language model is pruned,
the vision tower and projector are kept, and the saved checkpoint is multimodal again."""

from pathlib import Path

import pytest
import torch

from medprune.load.model import load_model, save_model
from medprune.prune.engine import prune_model

from tests.helpers.tiny import TINY_VOCAB, byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config

IDS = torch.tensor([[5, 17, 99, 200, 3, 42, 250, 7, 64, 128, 11, 2] * 2])


def tiny_gemma3_multimodal(path: Path) -> Path:
    import transformers as tf

    text = dict(
        vocab_size=TINY_VOCAB + 4,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        max_position_embeddings=512,
        layer_types=["sliding_attention", "full_attention"] * 2,
        bos_token_id=256,
        eos_token_id=257,
        pad_token_id=258,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    cfg = tf.Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=TINY_VOCAB,
        eoi_token_index=TINY_VOCAB + 1,
        image_token_index=TINY_VOCAB + 2,
    )
    torch.manual_seed(0)
    model = tf.Gemma3ForConditionalGeneration(cfg).eval()
    save_model(model, byte_tokenizer(), path)
    return path


def _text_logits(model):
    with torch.no_grad():
        return model(input_ids=IDS, use_cache=False).logits


def _vision_state(model):
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if "vision_tower" in k or "multi_modal_projector" in k
    }


@pytest.mark.parametrize("method", ["wanda", "width", "depth"])
def test_prunes_the_language_model_and_keeps_the_rest(method, tmp_path):
    from transformers import Gemma3ForCausalLM, Gemma3ForConditionalGeneration

    src = tiny_gemma3_multimodal(tmp_path / "mm")
    full = Gemma3ForConditionalGeneration.from_pretrained(src, dtype=torch.float32).eval()
    vision = _vision_state(full)
    model, tok = load_model(src)
    assert isinstance(model, Gemma3ForCausalLM) and model.config.model_type == "gemma3_text"
    text_params = sum(p.numel() for p in model.parameters())
    assert text_params < sum(p.numel() for p in full.parameters())  # the vision tower is not in it
    torch.testing.assert_close(_text_logits(model), _text_logits(full), rtol=0, atol=0)

    settings = {
        "wanda": {"method": "wanda", "sparsity": 0.5},
        "width": {
            "method": "width",
            "structured": {"num_attention_heads": 2, "intermediate_size": 64},
        },
        "depth": {"method": "depth", "sparsity": 0.5},
    }[method]
    result = prune_model(model, tok, small_prune_config(**settings), calib_texts=CALIB_TEXTS)
    assert result.report["params_before"] == text_params
    save_model(result.model, tok, tmp_path / "pruned")

    again = Gemma3ForConditionalGeneration.from_pretrained(
        tmp_path / "pruned", dtype=torch.float32
    ).eval()
    for k, v in _vision_state(again).items():
        assert torch.equal(v, vision[k]), k
    torch.testing.assert_close(_text_logits(again), _text_logits(result.model), rtol=0, atol=0)
    reloaded, _ = load_model(tmp_path / "pruned")
    assert isinstance(reloaded, Gemma3ForCausalLM)
    if method == "width":
        assert again.config.text_config.num_attention_heads == 2
        assert again.config.text_config.intermediate_size == 64
    if method == "depth":
        assert again.config.text_config.num_hidden_layers == 2
        assert len(again.config.text_config.layer_types) == 2
    if method == "wanda":
        zeros = sum(
            int((p == 0).sum())
            for n, p in again.named_parameters()
            if "language_model.layers" in n and p.dim() == 2
        )
        assert zeros > 0
