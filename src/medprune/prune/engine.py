"""Prune a causal LM layer by layer according to a :class:`~medprune.config.PruneConfig`.

::

    result = prune_model(model, tokenizer, cfg.prune, calib_texts=texts, progress=print)
    result.model.save_pretrained(out)      # a new, smaller model for width/depth
    json.dump(result.report, fh)           # sparsity, per-layer stats, params, wall time

Calibration runs one decoder layer at a time, and only that layer (and the calibration
activations) visit ``device``. Wanda and SparseGPT compute each layer once: sub-layer by
sub-layer, each linear pruned as soon as the statistics of its input are complete, so the
layer's outputs (the next layer's inputs) come out of the same pass
(:mod:`medprune.prune.sequential`). OWL, width and depth statistics come from one pass
over the dense layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from medprune.config import PruneConfig
from medprune.errors import PruneError
from medprune.prune.allocation import owl_sparsities
from medprune.prune.apply import apply_mask, is_excluded, prunable_linears, sparsity_report
from medprune.prune.arch import check_supported, head_layout, layer_parts
from medprune.prune.calibration import (
    LayerInputs,
    calibration_token_ids,
    capture_layer_inputs,
    run_layer,
)
from medprune.prune.dense import DenseCalibration, model_fingerprint
from medprune.prune.depth import block_influence, build_depth_model, depth_count, layers_to_drop
from medprune.prune.memory import release_free_memory
from medprune.prune.methods import PruneMethod, get_method
from medprune.prune.select import nm_mask, per_row_mask, unstructured_mask
from medprune.prune.sequential import prune_layer_sequentially
from medprune.prune.sparsegpt import inverse_hessian_cholesky, sparsegpt_prune
from medprune.prune.stats import InputStats, collect_input_stats
from medprune.prune.width import (
    WidthPlan,
    build_width_model,
    candidate_plans,
    masked_layer_error,
    plan_params,
)


@dataclass
class PruneResult:
    """``model``: the pruned model (the same object for unstructured methods, a new smaller
    one for ``width``/``depth``); ``report``: JSON-serialisable metrics."""

    model: nn.Module
    report: dict = field(default_factory=dict)


def select_mask(
    scores: torch.Tensor, cfg: PruneConfig, row_wise: bool, sparsity: float
) -> torch.Tensor:
    if cfg.nm is not None:
        return nm_mask(scores, *cfg.nm)
    if row_wise:
        return per_row_mask(scores, sparsity)
    return unstructured_mask(scores, sparsity)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_prune_settings(model: nn.Module, cfg: PruneConfig, method: PruneMethod) -> None:
    """Fail before any work on settings this model cannot take."""
    check_supported(model)
    layers = model.model.layers
    if method.kind in ("mask", "update"):
        linears = {
            f"model.layers.{i}.{n}": lin
            for i, layer in enumerate(layers)
            for n, lin in prunable_linears(layer, cfg.exclude).items()
        }
        if not linears:
            raise PruneError(f"prune.exclude={cfg.exclude} leaves no linear layer to prune")
        if cfg.nm is not None:
            _, m = cfg.nm
            bad = sorted({lin.in_features for lin in linears.values() if lin.in_features % m})
            if bad:
                raise PruneError(
                    f"prune.pattern={cfg.pattern!r} needs in_features divisible by M={m}; this "
                    f"model has in_features {bad}"
                )
            if method.kind == "update" and cfg.sparsegpt.blocksize % m:
                raise PruneError(
                    f"prune.sparsegpt.blocksize={cfg.sparsegpt.blocksize} must be a multiple of "
                    f"M={m} for prune.pattern={cfg.pattern!r}"
                )
    elif method.kind == "depth":
        depth_count(len(layers), cfg.sparsity, cfg.structured.layers_to_remove)


@torch.no_grad()
def prune_model(
    model: nn.Module,
    tokenizer=None,
    cfg: PruneConfig | None = None,
    *,
    calib_texts: list[str] | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[str], None] | None = None,
    dense: DenseCalibration | None = None,
) -> PruneResult:
    """Prune ``model`` as ``cfg`` says and return a :class:`PruneResult`.

    Unstructured/N:M methods (``magnitude``, ``wanda``, ``sparsegpt``) prune in place.
    Structured methods (``width``, ``depth``) return a new, smaller model and release the
    decoder layers of the input model. Calibrated methods need ``tokenizer`` and
    ``calib_texts`` (see :func:`~medprune.prune.calibration.load_calibration_texts`).
    Embeddings, ``lm_head`` and modules matching ``cfg.exclude`` are never sparsified.
    ``dense``: statistics of this dense model from :func:`collect_dense_calibration`, reused
    instead of tokenising ``calib_texts`` and of the dense pass of OWL, depth and width
    (:mod:`medprune.prune.dense`); they must match the model and ``cfg.calibration``.
    Everything that can be checked is checked before any work starts.
    """
    cfg = cfg or PruneConfig()
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    method = get_method(cfg.method)
    check_prune_settings(model, cfg, method)
    plans: list[WidthPlan] = candidate_plans(model, cfg) if method.kind == "width" else []
    needs_calibration = method.needs_calibration or cfg.allocation.kind == "owl"
    token_ids = None
    if dense is not None and needs_calibration:
        dense.check_matches(model, cfg.calibration)
        token_ids = dense.token_ids
    elif needs_calibration:
        if tokenizer is None or not calib_texts:
            raise PruneError(
                f"prune.method={cfg.method!r}"
                + (" with prune.allocation.kind='owl'" if cfg.allocation.kind == "owl" else "")
                + " needs calibration texts and a tokenizer (prune.calibration.data)"
            )
        cal = cfg.calibration
        token_ids = calibration_token_ids(tokenizer, calib_texts, cal.num_samples, cal.seq_len)
    total_before = sum(p.numel() for p in model.parameters())
    dev = resolve_device(device)

    extra: dict = {}
    if method.kind in ("mask", "update"):
        layer_sparsity = [cfg.sparsity] * len(model.model.layers)
        if cfg.allocation.kind == "owl":
            dense = dense or _collect_dense(model, cfg, token_ids, dev, say)
            a = cfg.allocation
            ratios = dense.owl_outlier_ratios(
                model, lambda i, layer: _layer_linears(layer, i, cfg), a.owl_threshold
            )
            layer_sparsity = owl_sparsities(ratios, cfg.sparsity, a.owl_lambda)
            extra["layer_sparsity"] = layer_sparsity
        _prune_unstructured(model, cfg, method, token_ids, layer_sparsity, dev, say)
        result_model = model
    elif method.kind == "width":
        if len(plans) > 1:  # the splits' output errors need the dense layer inputs
            *energy, errors = _width_importance(model, cfg, token_ids, dev, say, plans)
        else:
            dense = dense or _collect_dense(model, cfg, token_ids, dev, say)
            energy, errors = dense.width_energies(model), [0.0]
        plan = plans[min(range(len(plans)), key=lambda i: (errors[i], i))]
        if len(plans) > 1:
            extra["plan_search"] = [
                {**p.as_dict(), "params": plan_params(model, p), "layer_error": e}
                for p, e in zip(plans, errors, strict=True)
            ]
            say(
                f"width plan: {plan.num_attention_heads} heads, MLP {plan.intermediate_size} "
                f"(of {len(plans)} splits, lowest layer output error)"
            )
        result_model, kept = build_width_model(model, plan, *energy)
        extra["plan"] = plan.as_dict()
        extra["kept"] = kept
    else:
        dense = dense or _collect_dense(model, cfg, token_ids, dev, say)
        influence = list(dense.block_influence)
        drop = cfg.structured.layers_to_remove
        if drop is None:
            drop = layers_to_drop(influence, depth_count(len(influence), cfg.sparsity, None))
        result_model = build_depth_model(model, sorted(drop))
        extra["block_influence"] = influence
        extra["removed_layers"] = sorted(drop)
    report = sparsity_report(result_model, cfg.exclude)
    report.update(extra)
    report.update(
        method=cfg.method,
        pattern=cfg.pattern,
        target_sparsity=cfg.sparsity,
        settings=cfg.model_dump(mode="json"),
        params_before=total_before,
        param_ratio=report["total_params"] / total_before,
        calibration_tokens=int(token_ids.numel()) if token_ids is not None else 0,
        device=str(dev),
        wall_time_s=time.perf_counter() - start,
    )
    if method.kind in ("width", "depth"):
        report["config"] = {
            k: getattr(result_model.config, k, None)
            for k in (
                "num_hidden_layers",
                "hidden_size",
                "intermediate_size",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
            )
        }
    say(
        f"pruned with {cfg.method}: {report['total_params']:,} params, sparsity {report['sparsity']:.4f}"
    )
    return PruneResult(model=result_model, report=report)


def _layer_device(layer: nn.Module) -> torch.device:
    return next(layer.parameters()).device


def _layer_linears(layer: nn.Module, index: int, cfg: PruneConfig) -> dict[str, nn.Linear]:
    return {
        n: lin
        for n, lin in layer.named_modules()
        if isinstance(lin, nn.Linear) and not is_excluded(f"model.layers.{index}.{n}", cfg.exclude)
    }


def _layer_by_layer(model, cfg, token_ids, dev, say, visit, label: str) -> None:
    """Run ``visit(index, layer, inputs) -> next hidden states`` over all layers, keeping only
    the current layer on ``dev``."""
    inputs = capture_layer_inputs(model, token_ids, cfg.calibration.batch_size, dev)
    layers = model.model.layers
    for index, layer in enumerate(layers):
        home = _layer_device(layer)
        layer.to(dev)
        inputs = inputs.for_layer(index)  # this layer's own mask and rotary embedding
        hidden = visit(index, layer, inputs)
        layer.to(home)
        inputs = LayerInputs(hidden=hidden, kwargs=inputs.kwargs, layer_kwargs=inputs.layer_kwargs)
        if dev.type == "cpu":
            # The heap would otherwise creep up layer after layer. Keeping freed memory for
            # reuse instead (glibc: no trim, no mmap below 32 MB) took ~10% off the CPU
            # time but raised SparseGPT's peak from ~1.75x to 2.34x the model on SmolLM2
            # (each calibration thread keeps its own arena): not worth it.
            release_free_memory()
        say(f"{label}: layer {index + 1}/{len(layers)}")


def _prune_unstructured(model, cfg, method, token_ids, layer_sparsity, dev, say) -> None:
    layers = model.model.layers
    if not method.needs_calibration:
        for index, layer in enumerate(layers):
            for linear in _layer_linears(layer, index, cfg).values():
                scores = method.score(linear.weight, None)
                apply_mask(linear, select_mask(scores, cfg, method.row_wise, layer_sparsity[index]))
            say(f"{cfg.method}: layer {index + 1}/{len(layers)}")
        return

    def visit(index, layer, inputs):
        sparsity = layer_sparsity[index]
        inverses: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per shared input

        def prune_linear(name: str, linear: nn.Linear, stats: InputStats) -> None:
            if method.kind == "update":
                inverse = inverses.get(id(stats))
                if inverse is None:
                    inverse = inverses[id(stats)] = inverse_hessian_cholesky(
                        stats.hessian, cfg.sparsegpt.dampening
                    )
                new = sparsegpt_prune(
                    linear.weight,
                    None,
                    sparsity=sparsity,
                    nm=cfg.nm,
                    blocksize=cfg.sparsegpt.blocksize,
                    inverse=inverse,
                )
                linear.weight.copy_(new.to(linear.weight.dtype))
            else:
                scores = method.score(linear.weight, stats)
                apply_mask(linear, select_mask(scores, cfg, method.row_wise, sparsity))

        linears = _layer_linears(layer, index, cfg)
        if cfg.calibration.passes == 1:
            prune_layer_sequentially(
                layer, linears, inputs, prune_linear, hessian=method.needs_hessian
            )
            return inputs.hidden
        # Two passes: every linear's statistics from the dense layer, then the pruned layer
        # runs again to make the next layer's inputs (written over this layer's).
        stats, _ = collect_input_stats(
            layer, linears, inputs, hessian=method.needs_hessian, outputs="discard"
        )
        for name, linear in linears.items():
            if name in stats.by_linear:
                prune_linear(name, linear, stats.by_linear[name])
        del stats
        return run_layer(layer, inputs, in_place=True)

    _layer_by_layer(model, cfg, token_ids, dev, say, visit, cfg.method)


def _width_importance(model, cfg, token_ids, dev, say, plans: list[WidthPlan]):
    """Per-layer head and MLP-channel energies, the hidden-channel energy summed over layers,
    and, when there are several candidate ``plans``, each plan's layer output error summed
    over layers (all from one dense layer-by-layer pass)."""
    layout = head_layout(model.config)
    head_energy: list[torch.Tensor] = []
    channel_energy: list[torch.Tensor] = []
    hidden = torch.zeros(model.config.hidden_size, dtype=torch.float64)
    errors = [0.0] * len(plans)

    def visit(index, layer, inputs):
        parts = layer_parts(layer)
        names = {id(m): n for n, m in layer.named_modules()}
        attn_in = parts.qkv or parts.q
        mlp_in = parts.gate_up or parts.gate
        linears = {names[id(m)]: m for m in (attn_in, parts.o, mlp_in, parts.down)}
        searching = len(plans) > 1
        stats, outputs = collect_input_stats(
            layer, linears, inputs, hessian=False, outputs="return" if searching else "in_place"
        )
        o_sq = stats.by_linear[names[id(parts.o)]].sq_sum
        head_energy.append(o_sq.reshape(layout.num_heads, layout.head_dim).sum(1).cpu())
        channel_energy.append(stats.by_linear[names[id(parts.down)]].sq_sum.cpu())
        for m in (attn_in, mlp_in):
            hidden.add_(stats.by_linear[names[id(m)]].sq_sum.double().cpu())
        if searching:
            for i, plan in enumerate(plans):
                errors[i] += masked_layer_error(
                    layer,
                    plan,
                    layout,
                    head_energy[-1],
                    channel_energy[-1],
                    inputs.hidden,
                    inputs.kwargs,
                    outputs,
                )
            inputs.hidden[:] = outputs
        return inputs.hidden

    _layer_by_layer(model, cfg, token_ids, dev, say, visit, "width importance")
    return head_energy, channel_energy, hidden, errors


@torch.no_grad()
def collect_dense_calibration(
    model: nn.Module,
    tokenizer,
    cfg: PruneConfig,
    calib_texts: list[str],
    *,
    device: str | torch.device | None = None,
    progress: Callable[[str], None] | None = None,
) -> DenseCalibration:
    """One layer-by-layer pass over the dense ``model`` on ``calib_texts`` (tokenised as
    ``cfg.calibration`` says): the statistics every candidate pruned from this model can
    reuse (:class:`~medprune.prune.dense.DenseCalibration`, passed to :func:`prune_model` as
    ``dense``). The model is not changed."""
    check_supported(model)
    if tokenizer is None or not calib_texts:
        raise PruneError("dense calibration statistics need calibration texts and a tokenizer")
    cal = cfg.calibration
    token_ids = calibration_token_ids(tokenizer, calib_texts, cal.num_samples, cal.seq_len)
    return _collect_dense(
        model, cfg, token_ids, resolve_device(device), progress or (lambda _m: None)
    )


def _collect_dense(model, cfg, token_ids, dev, say) -> DenseCalibration:
    fingerprint = model_fingerprint(model)
    sq_sums: list[dict[str, torch.Tensor]] = []
    influence: list[float] = []

    def visit(index, layer, inputs):
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        stats, outputs = collect_input_stats(
            layer, linears, inputs, hessian=False, outputs="return"
        )
        sq_sums.append({name: stats.by_linear[name].sq_sum.cpu() for name in linears})
        total, count = 0.0, 0
        for i, h_out in enumerate(outputs):  # each output replaces its input once measured
            s, n = block_influence(inputs.hidden[i], h_out)
            total += s
            count += n
            inputs.hidden[i] = h_out
        influence.append(total / count)
        return inputs.hidden

    _layer_by_layer(model, cfg, token_ids, dev, say, visit, "dense statistics")
    cal = cfg.calibration
    return DenseCalibration(
        token_ids=token_ids,
        sq_sums=sq_sums,
        block_influence=influence,
        calibration={
            "num_samples": cal.num_samples,
            "seq_len": cal.seq_len,
            "batch_size": cal.batch_size,
        },
        model=fingerprint,
    )
