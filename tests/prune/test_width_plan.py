import pytest
import torch
from tiny_families import tiny_family

from medprune.config import PruneConfig
from medprune.errors import PruneError
from medprune.prune.arch import HeadLayout
from medprune.prune.width import WidthPlan, head_options, plan_width, select_heads, top_channels


def test_head_options_keep_gqa_valid():
    layout = HeadLayout(num_heads=9, num_kv_heads=3, head_dim=64)
    assert head_options(layout, "query_heads") == [(3, 3), (6, 3), (9, 3)]
    assert head_options(layout, "kv_groups") == [(3, 1), (6, 2), (9, 3)]


def test_select_heads_same_count_per_group():
    layout = HeadLayout(6, 2, 4)
    energy = torch.tensor([1.0, 9.0, 5.0, 7.0, 2.0, 8.0])
    plan = WidthPlan(4, 2, 4, 8, 16, "query_heads")
    q, kv = select_heads(energy, layout, plan)
    assert q.tolist() == [1, 2, 3, 5] and kv.tolist() == [0, 1]


def test_select_heads_whole_groups():
    layout = HeadLayout(6, 2, 4)
    energy = torch.tensor([1.0, 1.0, 1.0, 7.0, 2.0, 8.0])
    plan = WidthPlan(3, 1, 4, 8, 16, "kv_groups")
    q, kv = select_heads(energy, layout, plan)
    assert q.tolist() == [3, 4, 5] and kv.tolist() == [1]


def test_top_channels_sorted_and_stable():
    assert top_channels(torch.tensor([3.0, 1.0, 3.0, 2.0]), 2).tolist() == [0, 2]


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_plan_hits_parameter_target(ratio):
    model = tiny_family("llama", num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=8, intermediate_size=256)
    total = sum(p.numel() for p in model.parameters())
    plan = plan_width(model, PruneConfig(method="width", sparsity=ratio, structured={"channel_multiple": 8}))
    from medprune.prune.width import _count_params

    kept = _count_params(model, {k: getattr(plan, k) for k in ("num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "hidden_size")})
    assert abs(kept / total - (1 - ratio)) < 0.03
    assert plan.num_attention_heads % plan.num_key_value_heads == 0


def test_plan_rejects_heads_that_do_not_divide_groups():
    model = tiny_family("llama", num_attention_heads=8, num_key_value_heads=2, head_dim=8)
    with pytest.raises(PruneError, match=r"num_attention_heads=3.*allowed: 2 heads/2 kv, 4 heads/2 kv"):
        plan_width(model, PruneConfig(method="width", structured={"num_attention_heads": 3}))


def test_plan_rejects_oversized_mlp():
    model = tiny_family("llama")
    with pytest.raises(PruneError, match=r"intermediate_size=999 must be in \[1, 128\]"):
        plan_width(model, PruneConfig(method="width", structured={"intermediate_size": 999}))


def test_plan_rejects_hidden_on_gemma():
    model = tiny_family("gemma")
    with pytest.raises(PruneError, match="prune_hidden"):
        plan_width(model, PruneConfig(method="width", structured={"prune_hidden": True}))


def test_plan_rejects_unreachable_ratio():
    model = tiny_family("llama")  # embeddings are a big share of a tiny model
    with pytest.raises(PruneError, match="cannot be reached"):
        plan_width(model, PruneConfig(method="width", sparsity=0.95))
