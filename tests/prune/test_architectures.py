"""Every method on a tiny random model of every supported family."""

import copy

import pytest
import torch

from medprune.prune.apply import prunable_linears
from medprune.prune.arch import head_layout
from medprune.prune.engine import prune_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, FAMILIES, small_prune_config, tiny_family

METHODS = ("magnitude", "wanda", "sparsegpt")
IDS = torch.tensor([[5, 17, 99, 200, 3, 42, 250, 7, 64, 128, 11, 2]])


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS, use_cache=False).logits


def _reload(model, tmp_path):
    from transformers import AutoModelForCausalLM

    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    return AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32).eval()


#: (pattern, method): every method unstructured and 2:4; 4:8 once per family (SparseGPT)
PATTERNS_AND_METHODS = [
    *((pattern, method) for pattern in ("unstructured", "2:4") for method in METHODS),
    ("4:8", "sparsegpt"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("pattern", "method"), PATTERNS_AND_METHODS)
def test_unstructured_and_nm(family, method, pattern):
    model = tiny_family(family)
    cfg = small_prune_config(method=method, sparsity=0.5, pattern=pattern)
    report = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS).report
    linears = prunable_linears(model.model.layers, ())
    assert len(report["layers"]) == len(linears) > 0
    for name, lin in linears.items():
        zeros = int((lin.weight == 0).sum())
        assert abs(zeros / lin.weight.numel() - 0.5) < 0.01, name
        if pattern != "unstructured":
            n, m = map(int, pattern.split(":"))
            groups = (lin.weight != 0).reshape(lin.weight.shape[0], -1, m).sum(-1)
            assert (groups <= n).all(), name
    assert abs(report["sparsity"] - 0.5) < 2e-3
    assert torch.isfinite(_logits(model)).all()


def _masked_copy(original, kept):
    """The original model with removed heads and MLP channels zeroed at their outputs."""
    masked = copy.deepcopy(original)
    layout = head_layout(masked.config)
    d = layout.head_dim
    with torch.no_grad():
        for i, layer in enumerate(masked.model.layers):
            head_keep = torch.zeros(layout.num_heads, dtype=torch.bool)
            head_keep[kept["heads"][i]] = True
            layer.self_attn.o_proj.weight.mul_(head_keep.repeat_interleave(d).float())
            ch_keep = torch.zeros(masked.config.intermediate_size, dtype=torch.bool)
            ch_keep[kept["channels"][i]] = True
            layer.mlp.down_proj.weight.mul_(ch_keep.float())
    return masked


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head_mode", ["query_heads", "kv_groups"])
def test_width_reloads_and_matches_masked_model(family, head_mode, tmp_path):
    original = tiny_family(family, num_attention_heads=8, num_key_value_heads=2, head_dim=8)
    model = copy.deepcopy(original)
    cfg = small_prune_config(
        method="width",
        structured={"head_mode": head_mode, "num_attention_heads": 4, "intermediate_size": 64},
    )
    result = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    new = result.model
    kept = result.report["kept"]
    assert new.config.num_attention_heads == 4
    assert new.config.num_key_value_heads == (2 if head_mode == "query_heads" else 1)
    assert new.config.intermediate_size == 64
    for i in range(2):
        heads = kept["heads"][i]
        if head_mode == "query_heads":  # two query heads from each of the two groups of four
            assert sorted(h // 4 for h in heads) == [0, 0, 1, 1]
        else:  # one whole group
            assert len({h // 4 for h in heads}) == 1
    reloaded = _reload(new, tmp_path)
    n_new = sum(p.numel() for p in reloaded.parameters())
    assert n_new == result.report["total_params"] < sum(p.numel() for p in original.parameters())
    torch.testing.assert_close(_logits(reloaded), _logits(new), rtol=0, atol=0)
    torch.testing.assert_close(
        _logits(reloaded), _logits(_masked_copy(original, kept)), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("family", ["llama", "qwen2", "phi3", "qwen3", "llama3"])
def test_width_with_hidden_channels_reloads(family, tmp_path):
    model = tiny_family(family)
    total = sum(p.numel() for p in model.parameters())
    cfg = small_prune_config(
        method="width", sparsity=0.5, structured={"prune_hidden": True, "channel_multiple": 8}
    )
    result = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    new = result.model
    assert new.config.hidden_size < 64
    assert abs(result.report["total_params"] / total - 0.5) < 0.05
    reloaded = _reload(new, tmp_path)
    torch.testing.assert_close(_logits(reloaded), _logits(new), rtol=0, atol=0)


@pytest.mark.parametrize("family", [*FAMILIES, "gemma2"])
def test_depth_removes_lowest_influence_layers(family, tmp_path):
    original = tiny_family(family, num_hidden_layers=4)
    model = copy.deepcopy(original)
    result = prune_model(
        model,
        byte_tokenizer(),
        small_prune_config(method="depth", sparsity=0.5),
        calib_texts=CALIB_TEXTS,
    )
    influence = result.report["block_influence"]
    removed = result.report["removed_layers"]
    assert len(removed) == 2 and result.model.config.num_hidden_layers == 2
    assert max(influence[i] for i in removed) <= min(
        influence[i] for i in range(4) if i not in removed
    )
    reloaded = _reload(result.model, tmp_path)
    torch.testing.assert_close(_logits(reloaded), _logits(result.model), rtol=0, atol=0)
    # Same as the original with those layers skipped.
    skipped = copy.deepcopy(original)
    keep = [i for i in range(4) if i not in removed]
    skipped.model.layers = torch.nn.ModuleList([skipped.model.layers[i] for i in keep])
    skipped.config.num_hidden_layers = 2
    if getattr(skipped.config, "layer_types", None):
        skipped.config.layer_types = [skipped.config.layer_types[i] for i in keep]
    torch.testing.assert_close(_logits(reloaded), _logits(skipped), rtol=1e-5, atol=1e-5)


def test_depth_explicit_layers():
    model = tiny_family("llama", num_hidden_layers=4)
    cfg = small_prune_config(method="depth", structured={"layers_to_remove": [1, 2]})
    result = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    assert result.report["removed_layers"] == [1, 2]
    assert result.model.config.num_hidden_layers == 2
