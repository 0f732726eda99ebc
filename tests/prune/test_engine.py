import pytest
import torch

from medprune.config import PruneConfig
from medprune.errors import PruneError
from medprune.prune.apply import prunable_linears, sparsity_report
from medprune.prune.engine import prune_model


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.7])
def test_magnitude_exact_sparsity_per_layer(tiny_model, sparsity):
    report = prune_model(tiny_model, PruneConfig(method="magnitude", sparsity=sparsity))
    assert report["layers"], "no layer was pruned"
    for name, layer in report["layers"].items():
        assert layer["zeros"] == round(sparsity * layer["numel"]), name
    assert abs(report["sparsity"] - sparsity) < 1e-3


def test_embeddings_and_head_untouched(tiny_model):
    emb = tiny_model.model.embed_tokens.weight.clone()
    head = tiny_model.lm_head.weight.clone()
    report = prune_model(tiny_model, PruneConfig(sparsity=0.5))
    assert torch.equal(emb, tiny_model.model.embed_tokens.weight)
    assert torch.equal(head, tiny_model.lm_head.weight)
    assert not any("lm_head" in n or "embed" in n for n in report["layers"])


def test_magnitude_prunes_smallest(tiny_model):
    q = tiny_model.model.layers[0].self_attn.q_proj
    before = q.weight.detach().abs().clone()
    prune_model(tiny_model, PruneConfig(sparsity=0.5))
    zeroed = q.weight == 0
    assert before[zeroed].max() <= before[~zeroed].min()


def test_nm_pattern_on_model(tiny_model):
    prune_model(tiny_model, PruneConfig(sparsity=0.5, pattern="2:4"))
    for name, lin in prunable_linears(tiny_model.model.layers, ()).items():
        groups = (lin.weight != 0).reshape(lin.weight.shape[0], -1, 4).sum(-1)
        assert (groups <= 2).all(), name


def test_unknown_method(tiny_model):
    with pytest.raises(PruneError, match="not known"):
        prune_model(tiny_model, PruneConfig(method="nope"))


def test_report_counts_params(tiny_model):
    total = sum(p.numel() for p in tiny_model.parameters())
    report = prune_model(tiny_model, PruneConfig(sparsity=0.5))
    assert report["total_params"] == total
    assert report["nonzero_params"] == total - report["zeros"] or report["nonzero_params"] < total
    assert sparsity_report(tiny_model)["zeros"] == report["zeros"]
