"""One calibration pass per layer, sub-layer by sub-layer (prune.sequential)."""

import re
import threading

import pytest
import torch

from medprune.errors import PruneError
from medprune.prune.apply import prunable_linears
from medprune.prune.calibration import calibration_token_ids, capture_layer_inputs, run_layer
from medprune.prune.select import per_row_mask
from medprune.prune.sequential import prune_layer_sequentially
from medprune.prune.stats import collect_input_stats
from medprune.prune.wanda import wanda_scores

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, tiny_family


def _layer_and_inputs(family="llama", batches=3):
    model = tiny_family(family, seed=2)
    ids = calibration_token_ids(byte_tokenizer(), CALIB_TEXTS, 2 * batches, 32)
    inputs = capture_layer_inputs(model, ids, 2, torch.device("cpu"))
    if hasattr(inputs, "for_layer"):
        inputs = inputs.for_layer(0)
    return model.model.layers[0], inputs


def _wanda_half(name, linear, stats):
    linear.weight.mul_(per_row_mask(wanda_scores(linear.weight, stats.col_norm), 0.5))


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_one_pass_equals_the_pruned_layer_and_its_statistics(family):
    """The outputs of the single pass are the pruned layer's outputs, and every linear was
    pruned with the statistics of its input in the pruned layer (the sub-layers before it
    already pruned)."""
    layer, inputs = _layer_and_inputs(family)
    original = [h.clone() for h in inputs.hidden]
    dense_stats, _ = collect_input_stats(layer, prunable_linears(layer), inputs, hessian=True)
    order: list[str] = []

    def prune(name, linear, stats):
        order.append(name)
        _wanda_half(name, linear, stats)

    linears = prunable_linears(layer)
    stats = prune_layer_sequentially(layer, linears, inputs, prune, hessian=True)
    assert sorted(order) == sorted(linears) and len(order) == len(set(order))
    assert order[0] in ("self_attn.q_proj", "self_attn.qkv_proj")
    assert order[-1] == "mlp.down_proj"
    for name, lin in linears.items():
        assert int((lin.weight == 0).sum()) == lin.weight.numel() // 2, name

    again = type(inputs)(hidden=original, kwargs=inputs.kwargs)
    pruned_stats, _ = collect_input_stats(layer, linears, again, hessian=True)
    expected = run_layer(layer, again)
    for a, b in zip(inputs.hidden, expected, strict=True):
        assert torch.equal(a, b)
    for name in linears:
        assert torch.equal(stats.by_linear[name].sq_sum, pruned_stats.by_linear[name].sq_sum), name
        assert torch.equal(stats.by_linear[name].hessian, pruned_stats.by_linear[name].hessian), (
            name
        )
        assert stats.by_linear[name].tokens == sum(h.shape[0] * h.shape[1] for h in original)
    # The first linears read the layer's (dense) input; the later ones see pruned sub-layers.
    first = order[0]
    assert torch.equal(stats.by_linear[first].sq_sum, dense_stats.by_linear[first].sq_sum)
    assert not torch.equal(
        stats.by_linear["mlp.down_proj"].sq_sum, dense_stats.by_linear["mlp.down_proj"].sq_sum
    )
    # Linears that read the same tensor share one statistics object.
    if family == "llama":
        groups = {frozenset(g.members) for g in stats.groups}
        assert frozenset({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}) in groups
        assert frozenset({"mlp.gate_proj", "mlp.up_proj"}) in groups


def test_a_failure_in_one_batch_stops_the_pass_cleanly():
    layer, inputs = _layer_and_inputs()
    linears = prunable_linears(layer)
    threads_before = threading.active_count()

    def prune(name, linear, stats):
        if name == "self_attn.o_proj":
            raise RuntimeError("boom in o_proj")

    with pytest.raises(RuntimeError, match="boom in o_proj"):
        prune_layer_sequentially(layer, linears, inputs, prune, hessian=False)
    assert threading.active_count() == threads_before  # every worker unwound and joined
    assert not any(lin._forward_pre_hooks for lin in linears.values())


def test_batches_that_read_different_inputs_are_an_error():
    """A layer must run the same linears in the same order for every batch."""
    layer, inputs = _layer_and_inputs()
    linears = prunable_linears(layer)
    calls = {"n": 0}
    forward = layer.mlp.forward

    def skip_mlp_in_second_batch(x):
        calls["n"] += 1
        return x if calls["n"] == 2 else forward(x)

    layer.mlp.forward = skip_mlp_in_second_batch
    with pytest.raises(PruneError, match="read"):
        prune_layer_sequentially(layer, linears, inputs, lambda *a: None, hessian=False)
    assert not any(lin._forward_pre_hooks for lin in linears.values())


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_two_passes_prune_from_the_dense_layer_and_rerun_it(method):
    """``prune.calibration.passes: 2``: every linear of a layer is pruned with the
    statistics of the dense layer, then the pruned layer makes the next layer's inputs (the
    reference written out here with the building blocks); one pass gives the same first
    linears of layer 0 and different later ones."""
    from medprune.config import PruneConfig
    from medprune.prune.engine import prune_model
    from medprune.prune.sparsegpt import inverse_hessian_cholesky, sparsegpt_prune

    def config(passes):
        return PruneConfig(
            method=method,
            sparsity=0.5,
            calibration={"num_samples": 6, "seq_len": 32, "batch_size": 2, "passes": passes},
        )

    tok = byte_tokenizer()
    two = tiny_family("llama", seed=2)
    prune_model(two, tok, config(2), calib_texts=CALIB_TEXTS, device="cpu")
    one = tiny_family("llama", seed=2)
    prune_model(one, tok, config(1), calib_texts=CALIB_TEXTS, device="cpu")

    ref = tiny_family("llama", seed=2)
    ids = calibration_token_ids(tok, CALIB_TEXTS, 6, 32)
    inputs = capture_layer_inputs(ref, ids, 2, torch.device("cpu"))
    with torch.no_grad():
        for index, layer in enumerate(ref.model.layers):
            layer_inputs = inputs.for_layer(index)
            linears = prunable_linears(layer)
            stats, _ = collect_input_stats(
                layer, linears, layer_inputs, hessian=method == "sparsegpt", outputs="discard"
            )
            for name, lin in linears.items():
                s = stats.by_linear[name]
                if method == "sparsegpt":
                    inverse = inverse_hessian_cholesky(s.hessian, 0.01)
                    lin.weight.copy_(
                        sparsegpt_prune(lin.weight, None, sparsity=0.5, inverse=inverse)
                    )
                else:
                    _wanda_half(name, lin, s)
            run_layer(layer, layer_inputs, in_place=True)
            inputs = layer_inputs

    got, want, single = (dict(m.named_parameters()) for m in (two, ref, one))
    for name, p in want.items():
        assert torch.equal(got[name], p), name
    first = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(single[first], got[first])
    assert not torch.equal(
        single["model.layers.0.mlp.down_proj.weight"], got["model.layers.0.mlp.down_proj.weight"]
    )


def test_passes_must_be_one_or_two():
    from pydantic import ValidationError

    from medprune.config import PruneConfig

    with pytest.raises(ValidationError, match=re.escape("calibration.passes")):
        PruneConfig(calibration={"passes": 3})
