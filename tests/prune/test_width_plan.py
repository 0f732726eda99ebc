import pytest
import torch

from medprune.config import PruneConfig
from medprune.errors import PruneError
from medprune.prune.arch import HeadLayout
from medprune.prune.width import WidthPlan, head_options, plan_width, select_heads, top_channels

from tests.helpers.tiny_families import tiny_family


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
    model = tiny_family(
        "llama",
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=256,
    )
    total = sum(p.numel() for p in model.parameters())
    plan = plan_width(
        model, PruneConfig(method="width", sparsity=ratio, structured={"channel_multiple": 8})
    )
    from medprune.prune.width import _count_params

    kept = _count_params(
        model,
        {
            k: getattr(plan, k)
            for k in (
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "intermediate_size",
                "hidden_size",
            )
        },
    )
    assert abs(kept / total - (1 - ratio)) < 0.03
    assert plan.num_attention_heads % plan.num_key_value_heads == 0


def test_plan_rejects_heads_that_do_not_divide_groups():
    model = tiny_family("llama", num_attention_heads=8, num_key_value_heads=2, head_dim=8)
    with pytest.raises(
        PruneError, match=r"num_attention_heads=3.*allowed: 2 heads/2 kv, 4 heads/2 kv"
    ):
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


def _searchable_llama():
    return tiny_family(
        "llama",
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=256,
    )


def test_candidate_plans_each_meet_the_parameter_target():
    from medprune.prune.width import candidate_plans, plan_params

    model = _searchable_llama()
    total = sum(p.numel() for p in model.parameters())
    cfg = PruneConfig(method="width", sparsity=0.3, structured={"channel_multiple": 8})
    plans = candidate_plans(model, cfg)
    assert plans[0] == plan_width(model, cfg)
    assert len(plans) >= 3 and len({p.num_attention_heads for p in plans}) == len(plans)
    for plan in plans:
        assert abs(plan_params(model, plan) - 0.7 * total) <= 0.05 * total
        assert plan.hidden_size == model.config.hidden_size
    # fewer heads leave room for more MLP channels
    by_heads = sorted(plans, key=lambda p: p.num_attention_heads)
    assert [p.intermediate_size for p in by_heads] == sorted(
        (p.intermediate_size for p in by_heads), reverse=True
    )
    off = PruneConfig(
        method="width", sparsity=0.3, structured={"channel_multiple": 8, "plan_search": False}
    )
    assert candidate_plans(model, off) == [plan_width(model, off)]


@pytest.mark.parametrize("mode", ["query_heads", "kv_groups"])
def test_masked_layer_equals_sliced_layer(mode):
    """Switching heads/channels off by zeroing o/down input columns is exactly removing them."""
    import copy

    from medprune.prune.arch import head_layout
    from medprune.prune.calibration import calibration_token_ids, capture_layer_inputs, run_layer
    from medprune.prune.width import build_width_model, masked_layer_error

    from tests.helpers.tiny import byte_tokenizer
    from tests.helpers.tiny_families import CALIB_TEXTS

    model = _searchable_llama()
    layout = head_layout(model.config)
    plan = WidthPlan(4, 2 if mode == "query_heads" else 1, 8, 96, 64, mode)
    gen = torch.Generator().manual_seed(0)
    heads = [torch.rand(8, generator=gen) for _ in range(3)]
    channels = [torch.rand(256, generator=gen) for _ in range(3)]
    inputs = capture_layer_inputs(
        model, calibration_token_ids(byte_tokenizer(), CALIB_TEXTS, 4, 32), 2, torch.device("cpu")
    )
    layer = model.model.layers[0]
    before = {n: p.clone() for n, p in layer.named_parameters()}
    small, _ = build_width_model(copy.deepcopy(model), plan, heads, channels, None)
    sliced = run_layer(small.model.layers[0], inputs)
    dense = run_layer(layer, inputs)
    scale = sum(float((d - s).pow(2).sum()) for d, s in zip(dense, sliced, strict=True))
    assert scale > 1e-3  # removing heads/channels does change the layer
    err = masked_layer_error(
        layer, plan, layout, heads[0], channels[0], inputs.hidden, inputs.kwargs, sliced
    )
    assert err < 1e-9 * max(1.0, scale)
    assert all(torch.equal(p, before[n]) for n, p in layer.named_parameters())  # weights restored


def test_width_search_keeps_the_lowest_error_split():
    from medprune.prune.engine import prune_model

    from tests.helpers.tiny import byte_tokenizer
    from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config

    cfg = small_prune_config(method="width", sparsity=0.3, structured={"channel_multiple": 8})
    report = prune_model(_searchable_llama(), byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS).report
    tried = report["plan_search"]
    assert len(tried) >= 3
    best = min(tried, key=lambda t: t["layer_error"])
    assert report["plan"]["num_attention_heads"] == best["num_attention_heads"]
    assert report["plan"]["intermediate_size"] == best["intermediate_size"]
    assert report["total_params"] == best["params"]
    assert len({round(t["layer_error"], 6) for t in tried}) > 1  # the splits really differ
    off = small_prune_config(
        method="width", sparsity=0.3, structured={"channel_multiple": 8, "plan_search": False}
    )
    plain = prune_model(_searchable_llama(), byte_tokenizer(), off, calib_texts=CALIB_TEXTS).report
    assert "plan_search" not in plain
    assert {k: plain["plan"][k] for k in ("num_attention_heads", "intermediate_size")} == {
        k: tried[0][k] for k in ("num_attention_heads", "intermediate_size")
    }
