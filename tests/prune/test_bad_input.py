"""Impossible settings fail with a clear error before any weight changes."""

import pytest
import torch
from pydantic import ValidationError

from medprune.config import PruneConfig
from medprune.errors import DataError, PruneError
from medprune.prune.engine import prune_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config, tiny_family


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, snap):
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("pattern", ["4:4", "5:4", "0:4", "2-4"])
def test_impossible_nm_rejected_by_config(pattern):
    with pytest.raises(ValidationError, match="pattern"):
        PruneConfig(pattern=pattern)


def test_nm_that_does_not_divide_features():
    model = tiny_family("llama")
    snap = _snapshot(model)
    with pytest.raises(
        PruneError,
        match=r"pattern='3:5'.*divisible by M=5.*\[128, 64\]|pattern='3:5'.*divisible by M=5",
    ):
        prune_model(model, None, PruneConfig(pattern="3:5"))
    assert _unchanged(model, snap)


def test_removing_every_layer():
    model = tiny_family("llama")
    snap = _snapshot(model)
    cfg = small_prune_config(method="depth", structured={"layers_to_remove": [0, 1]})
    with pytest.raises(PruneError, match=r"remove all 2 layers.*at most 1"):
        prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    assert _unchanged(model, snap)


def test_depth_index_out_of_range():
    model = tiny_family("llama")
    with pytest.raises(PruneError, match=r"\[5\].*0\.\.1"):
        prune_model(
            model,
            byte_tokenizer(),
            small_prune_config(method="depth", structured={"layers_to_remove": [5]}),
            calib_texts=CALIB_TEXTS,
        )


def test_width_not_dividing_groups():
    model = tiny_family("llama")
    snap = _snapshot(model)
    cfg = small_prune_config(method="width", structured={"num_attention_heads": 3})
    with pytest.raises(PruneError, match="num_attention_heads=3"):
        prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    assert _unchanged(model, snap)


def test_calibration_too_small():
    model = tiny_family("llama")
    snap = _snapshot(model)
    cfg = PruneConfig(method="wanda", calibration={"num_samples": 64, "seq_len": 256})
    with pytest.raises(DataError, match=r"num_samples=64 x seq_len=256 needs 16384"):
        prune_model(model, byte_tokenizer(), cfg, calib_texts=["short text"])
    assert _unchanged(model, snap)


def test_unsupported_architecture():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(PruneError, match=r"'gpt2' is not supported.*llama"):
        prune_model(model, None, PruneConfig())


def test_owl_with_nm_rejected():
    with pytest.raises(ValidationError, match="owl"):
        PruneConfig(method="wanda", pattern="2:4", allocation={"kind": "owl"})


def test_structured_with_nm_rejected():
    with pytest.raises(ValidationError, match="does not apply to structured"):
        PruneConfig(method="depth", pattern="2:4")


def test_check_supported_takes_a_model_type_string():
    """A preflight checks config.json's model_type before loading any weights."""
    from medprune.prune.arch import check_supported, supported_families

    families = supported_families()
    assert {"llama", "mistral", "qwen2", "gemma", "gemma2", "phi3"} <= set(families)
    for model_type, family in families.items():
        assert check_supported(model_type) == model_type == family.model_type
        assert set(family.methods) <= {"magnitude", "wanda", "sparsegpt", "width", "depth"}
    with pytest.raises(PruneError, match=r"'bert' .*not supported.*supported: llama, mistral"):
        check_supported("bert")


def test_depth_share_that_rounds_to_zero_layers_is_refused():
    model = tiny_family("llama")  # 2 layers: 25% rounds to 0
    snap = _snapshot(model)
    cfg = small_prune_config(method="depth", sparsity=0.25)
    with pytest.raises(
        PruneError,
        match=r"prune.sparsity=0.25 of 2 layers rounds to 0 layers.*smallest prune.sparsity that removes one layer is 0.251",
    ):
        prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    assert _unchanged(model, snap)
    with pytest.raises(PruneError, match="layers_to_remove is empty"):
        prune_model(
            model,
            byte_tokenizer(),
            small_prune_config(method="depth", structured={"layers_to_remove": []}),
            calib_texts=CALIB_TEXTS,
        )
    result = prune_model(
        model,
        byte_tokenizer(),
        small_prune_config(method="depth", sparsity=0.251),
        calib_texts=CALIB_TEXTS,
    )
    assert result.model.config.num_hidden_layers == 1 and len(result.report["removed_layers"]) == 1
