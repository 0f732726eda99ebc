"""Structured width pruning (as in Minitron): remove attention heads, MLP channels and
optionally hidden channels ranked by their activation energy on calibration data.

The same number is removed in every layer (which ones may differ), so the result is a
standard model with a smaller config. Heads are removed GQA-aware: either the same number
of query heads in every key/value group (``query_heads``) or whole key/value groups
(``kv_groups``), so the model stays a valid GQA model.

Pure pieces: :func:`plan_width` (sizes), :func:`candidate_plans` (the head/MLP splits that
meet a parameter target; the one whose masked layers best reproduce the dense layers on the
calibration data is kept, see :func:`masked_layer_error`), :func:`select_heads` /
:func:`top_channels` (indices), :func:`build_width_model` (slicing into a new model).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from medprune.config import PruneConfig
from medprune.errors import PruneError
from medprune.prune.arch import HeadLayout, head_layout, layer_norms, layer_parts
from medprune.prune.structure import fill_from, finish, set_param, skeleton


@dataclass(frozen=True)
class WidthPlan:
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    hidden_size: int
    head_mode: str

    def as_dict(self) -> dict:
        return asdict(self)


def _round_multiple(x: float, multiple: int, lo: int, hi: int) -> int:
    value = int(round(x / multiple)) * multiple
    return max(min(value, hi), min(lo, hi))


def head_options(layout: HeadLayout, mode: str) -> list[tuple[int, int]]:
    """Allowed ``(num_attention_heads, num_key_value_heads)`` after pruning, smallest first."""
    g, kv = layout.group_size, layout.num_kv_heads
    if mode == "query_heads":
        return [(kv * q, kv) for q in range(1, g + 1)]
    return [(k * g, k) for k in range(1, kv + 1)]


def config_error(model: nn.Module, **updates) -> str | None:
    """Why ``model.config`` with ``updates`` could not be saved and reloaded by the installed
    transformers, or ``None`` if it can. Llama and Gemma 2/3 configs, for example, refuse a
    head count that does not divide ``hidden_size`` even when ``head_dim`` is explicit."""
    cfg = copy.deepcopy(model.config)
    for key, value in updates.items():
        setattr(cfg, key, value)
    try:
        validate = getattr(cfg, "validate", None)
        if callable(validate):
            validate()
        type(cfg).from_dict(cfg.to_dict())
    except Exception as exc:  # any failure means the config cannot round-trip
        return " ".join(str(exc).split())
    return None


def saveable_head_options(
    model: nn.Module, layout: HeadLayout, mode: str, hidden_size: int
) -> list[tuple[int, int]]:
    """The :func:`head_options` whose config saves and reloads with ``hidden_size``."""
    return [
        (heads, kv)
        for heads, kv in head_options(layout, mode)
        if config_error(
            model,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=layout.head_dim,
            hidden_size=hidden_size,
        )
        is None
    ]


def _plan_config_error(model: nn.Module, plan: WidthPlan) -> str | None:
    keys = (
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "hidden_size",
    )
    return config_error(model, **{k: getattr(plan, k) for k in keys})


def _checked(model: nn.Module, plan: WidthPlan) -> WidthPlan:
    """``plan``, or a :class:`PruneError` if the pruned model's config could not be saved."""
    error = _plan_config_error(model, plan)
    if error is not None:
        raise PruneError(
            f"width plan {plan.as_dict()} gives a {model.config.model_type!r} config that cannot "
            f"be saved: {error}; choose other prune.structured sizes"
        )
    return plan


_PARAM_COUNTS: dict[tuple, int] = {}


def _count_params(model: nn.Module, updates: dict) -> int:
    """Parameters of ``model`` with config ``updates``: counted on meta-device copies of one
    and two layers (the count is affine in the number of layers). Counts are remembered per
    config and updates: plan searches ask for the same sizes many times, and each count
    builds two models."""
    key = (type(model), model.config.to_json_string(use_diff=False), tuple(sorted(updates.items())))
    if key not in _PARAM_COUNTS:
        if len(_PARAM_COUNTS) > 4096:
            _PARAM_COUNTS.clear()
        _PARAM_COUNTS[key] = _count_params_uncached(model, updates)
    return _PARAM_COUNTS[key]


def _count_params_uncached(model: nn.Module, updates: dict) -> int:
    layers = model.config.num_hidden_layers
    counts = []
    for n in (1, 2):
        extra: dict[str, object] = {"num_hidden_layers": n}
        if getattr(model.config, "layer_types", None):
            extra["layer_types"] = list(model.config.layer_types[:n])
        m = skeleton(model, **updates, **extra)
        counts.append(sum(p.numel() for p in m.parameters()))
    per_layer = counts[1] - counts[0]
    return counts[0] + (layers - 1) * per_layer


def _has_explicit_sizes(s) -> bool:
    """Whether ``prune.structured`` gives any kept size explicitly."""
    return any(
        v is not None
        for v in (s.num_attention_heads, s.num_key_value_heads, s.intermediate_size, s.hidden_size)
    )


def _mlp_size_for(model: nn.Module, sizes: dict, target: float, mult: int) -> float:
    """The (unrounded) MLP size that brings ``model`` with the other ``sizes`` to ``target``
    parameters: the count is affine in it."""
    c1 = _count_params(model, {**sizes, "intermediate_size": mult})
    c2 = _count_params(model, {**sizes, "intermediate_size": 2 * mult})
    return mult + (target - c1) / ((c2 - c1) / mult)


def plan_width(model: nn.Module, cfg: PruneConfig) -> WidthPlan:
    """Kept sizes for ``cfg`` (explicit sizes, or ``cfg.sparsity`` = fraction of all
    parameters to remove). Raises a :class:`PruneError` naming the value and what is allowed."""
    s = cfg.structured
    mc = model.config
    layout = head_layout(mc)
    hidden0, inter0 = mc.hidden_size, mc.intermediate_size
    options = saveable_head_options(model, layout, s.head_mode, s.hidden_size or hidden0)
    model_type = mc.model_type
    explicit = _has_explicit_sizes(s)
    if (s.prune_hidden or s.hidden_size is not None) and model_type.startswith("gemma"):
        raise PruneError(
            f"prune.structured.prune_hidden is not supported for {model_type!r}: its embedding "
            "scale depends on hidden_size; prune heads and MLP channels only"
        )

    if explicit:
        heads, kv = layout.num_heads, layout.num_kv_heads
        if s.num_attention_heads is not None or s.num_key_value_heads is not None:
            matches = [
                o
                for o in options
                if (s.num_attention_heads is None or o[0] == s.num_attention_heads)
                and (s.num_key_value_heads is None or o[1] == s.num_key_value_heads)
            ]
            if not matches:
                allowed = ", ".join(f"{h} heads/{k} kv" for h, k in options)
                unsaveable = len(options) < len(head_options(layout, s.head_mode))
                raise PruneError(
                    f"prune.structured: num_attention_heads={s.num_attention_heads}, "
                    f"num_key_value_heads={s.num_key_value_heads} is not possible with "
                    f"head_mode={s.head_mode!r} on {layout.num_heads} heads in "
                    f"{layout.num_kv_heads} key/value groups"
                    + (
                        f" (a {model_type!r} config needs hidden_size={s.hidden_size or hidden0} "
                        "divisible by the head count)"
                        if unsaveable
                        else ""
                    )
                    + f"; allowed: {allowed}"
                )
            heads, kv = matches[-1]
        inter = s.intermediate_size if s.intermediate_size is not None else inter0
        if not 1 <= inter <= inter0:
            raise PruneError(f"prune.structured.intermediate_size={inter} must be in [1, {inter0}]")
        hidden = s.hidden_size if s.hidden_size is not None else hidden0
        if not 1 <= hidden <= hidden0:
            raise PruneError(f"prune.structured.hidden_size={hidden} must be in [1, {hidden0}]")
        return _checked(model, WidthPlan(heads, kv, layout.head_dim, inter, hidden, s.head_mode))

    if not (s.prune_attention or s.prune_mlp or s.prune_hidden):
        raise PruneError(
            "prune.structured: prune_attention, prune_mlp and prune_hidden are all off"
        )
    total0 = sum(p.numel() for p in model.parameters())
    target = (1.0 - cfg.sparsity) * total0
    mult = s.channel_multiple

    def sizes(f: float) -> dict:
        heads, kv = layout.num_heads, layout.num_kv_heads
        if s.prune_attention:
            heads, kv = min(options, key=lambda o: (abs(o[0] / layout.num_heads - f), -o[0]))
        inter = _round_multiple(f * inter0, mult, mult, inter0) if s.prune_mlp else inter0
        hidden = hidden0
        if s.prune_hidden:
            hidden = _round_multiple(f * hidden0, mult, mult, hidden0)
            if (
                config_error(
                    model,
                    num_attention_heads=heads,
                    num_key_value_heads=kv,
                    head_dim=layout.head_dim,
                    hidden_size=hidden,
                )
                is not None
            ):
                step = math.lcm(mult, heads)  # Llama/Gemma configs: heads must divide hidden
                hidden = _round_multiple(f * hidden0, step, step, hidden0)
        return dict(
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=layout.head_dim,
            intermediate_size=inter,
            hidden_size=hidden,
        )

    lo, hi = 0.0, 1.0  # count(sizes(f)) grows with f
    for _ in range(24):
        mid = (lo + hi) / 2
        if _count_params(model, sizes(mid)) > target:
            hi = mid
        else:
            lo = mid
    best = sizes(hi)
    if s.prune_mlp:
        # Heads and hidden are coarse; fit the MLP size to the target.
        inter = _mlp_size_for(model, best, target, mult)
        best["intermediate_size"] = _round_multiple(inter, mult, mult, inter0)
    reached = _count_params(model, best)
    if abs(reached - target) > 0.05 * total0:
        raise PruneError(
            f"prune.sparsity={cfg.sparsity} (fraction of parameters to remove) cannot be reached "
            f"with width pruning of this model (closest: {1 - reached / total0:.3f}); allowed "
            "values remove at most the prunable heads/channels; set prune_hidden or explicit sizes"
        )
    return _checked(
        model,
        WidthPlan(
            best["num_attention_heads"],
            best["num_key_value_heads"],
            layout.head_dim,
            best["intermediate_size"],
            best["hidden_size"],
            s.head_mode,
        ),
    )


def candidate_plans(model: nn.Module, cfg: PruneConfig) -> list[WidthPlan]:
    """The plans the width method chooses from, the :func:`plan_width` plan first.

    With ``structured.plan_search`` (and a parameter target, heads and MLP both pruned, hidden
    kept), one plan per allowed head count whose MLP size, fitted to the target, is possible:
    fewer heads leave more MLP channels. Otherwise just the :func:`plan_width` plan.
    """
    base = plan_width(model, cfg)
    s = cfg.structured
    if (
        _has_explicit_sizes(s)
        or not s.plan_search
        or s.prune_hidden
        or not (s.prune_attention and s.prune_mlp)
    ):
        return [base]
    mc = model.config
    layout = head_layout(mc)
    mult, inter0 = s.channel_multiple, mc.intermediate_size
    total0 = sum(p.numel() for p in model.parameters())
    target = (1.0 - cfg.sparsity) * total0
    plans = [base]
    for heads, kv in saveable_head_options(model, layout, s.head_mode, mc.hidden_size):
        sizes = dict(
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=layout.head_dim,
            hidden_size=mc.hidden_size,
        )
        inter = _mlp_size_for(model, sizes, target, mult)
        if not mult <= inter <= inter0:
            continue
        inter = _round_multiple(inter, mult, mult, inter0)
        if (
            abs(_count_params(model, {**sizes, "intermediate_size": inter}) - target)
            > 0.05 * total0
        ):
            continue
        plan = WidthPlan(heads, kv, layout.head_dim, inter, mc.hidden_size, s.head_mode)
        if plan not in plans and _plan_config_error(model, plan) is None:
            plans.append(plan)
    return plans


def plan_params(model: nn.Module, plan: WidthPlan) -> int:
    """Parameters of ``model`` pruned to ``plan``."""
    keys = (
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "hidden_size",
    )
    return _count_params(model, {k: getattr(plan, k) for k in keys})


@torch.no_grad()
def masked_layer_error(
    layer: nn.Module,
    plan: WidthPlan,
    layout: HeadLayout,
    head_energy: torch.Tensor,
    channel_energy: torch.Tensor,
    hidden: list[torch.Tensor],
    kwargs: list[dict],
    dense_out: list[torch.Tensor],
) -> float:
    """Squared error between the dense outputs of ``layer`` and its outputs with the heads
    and MLP channels ``plan`` removes switched off (their ``o``/``down`` input columns zeroed,
    which is exactly what removing them does when the hidden size is kept). The layer's
    weights are restored afterwards."""
    from medprune.prune.calibration import layer_output

    parts = layer_parts(layer)
    d = layout.head_dim
    qh, _ = select_heads(head_energy, layout, plan)
    head_keep = torch.zeros(layout.num_heads, dtype=torch.bool)
    head_keep[qh] = True
    ch_keep = torch.zeros(parts.down.in_features, dtype=torch.bool)
    ch_keep[top_channels(channel_energy, plan.intermediate_size)] = True
    saved = {
        parts.o: parts.o.weight.detach().clone(),
        parts.down: parts.down.weight.detach().clone(),
    }
    try:
        parts.o.weight.mul_(head_keep.repeat_interleave(d).to(parts.o.weight))
        parts.down.weight.mul_(ch_keep.to(parts.down.weight))
        err = 0.0
        for h, kw, ref in zip(hidden, kwargs, dense_out, strict=True):
            err += float((layer_output(layer(h, **kw)) - ref).double().pow(2).sum())
        return err
    finally:
        for lin, w in saved.items():
            lin.weight.copy_(w)


def top_channels(energy: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` highest-energy channels; ties by position."""
    order = torch.argsort(-energy.double(), stable=True)[:keep]
    return torch.sort(order).values


def select_heads(
    head_energy: torch.Tensor, layout: HeadLayout, plan: WidthPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(query heads kept, key/value heads kept)``, ascending. Query head ``j`` belongs to
    key/value group ``j // group_size`` (the layout of ``repeat_kv``)."""
    g, kv = layout.group_size, layout.num_kv_heads
    grouped = head_energy.reshape(kv, g)
    if plan.head_mode == "query_heads" or plan.num_key_value_heads == kv:
        per_group = plan.num_attention_heads // plan.num_key_value_heads
        kept_kv = (
            torch.arange(kv)
            if plan.num_key_value_heads == kv
            else top_channels(grouped.sum(1), plan.num_key_value_heads)
        )
        q = [int(k) * g + top_channels(grouped[int(k)], per_group) for k in kept_kv]
        return torch.cat(q), kept_kv
    kept_kv = top_channels(grouped.sum(1), plan.num_key_value_heads)
    q = torch.cat([torch.arange(int(k) * g, (int(k) + 1) * g) for k in kept_kv])
    return q, kept_kv


def _head_rows(heads: torch.Tensor, head_dim: int, offset: int = 0) -> torch.Tensor:
    return (offset + heads.unsqueeze(1) * head_dim + torch.arange(head_dim)).reshape(-1)


def _slice_linear(
    new: nn.Linear, old: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None
) -> None:
    w = old.weight.detach()
    if rows is not None:
        w = w.index_select(0, rows)
    if cols is not None:
        w = w.index_select(1, cols)
    set_param(new, "weight", w)
    if old.bias is not None:
        b = old.bias.detach()
        set_param(new, "bias", b.index_select(0, rows) if rows is not None else b)


@torch.no_grad()
def build_width_model(
    model: nn.Module,
    plan: WidthPlan,
    head_energy: list[torch.Tensor],
    channel_energy: list[torch.Tensor],
    hidden_energy: torch.Tensor | None,
) -> tuple[nn.Module, dict]:
    """Slice ``model`` to ``plan`` keeping the highest-energy heads/channels of each layer.

    Returns the new model and the kept indices. The old model's decoder layers are released.
    """
    mc = model.config
    layout = head_layout(mc)
    d = layout.head_dim
    hidden_idx = None
    if plan.hidden_size != mc.hidden_size:
        hidden_idx = top_channels(hidden_energy, plan.hidden_size)
    new = skeleton(
        model,
        hidden_size=plan.hidden_size,
        num_attention_heads=plan.num_attention_heads,
        num_key_value_heads=plan.num_key_value_heads,
        head_dim=d,
        intermediate_size=plan.intermediate_size,
    )
    kept: dict[str, list] = {"heads": [], "kv_heads": [], "channels": []}
    for i, (old_layer, new_layer) in enumerate(
        zip(model.model.layers, new.model.layers, strict=True)
    ):
        qh, kvh = select_heads(head_energy[i], layout, plan)
        ch = top_channels(channel_energy[i], plan.intermediate_size)
        kept["heads"].append(qh.tolist())
        kept["kv_heads"].append(kvh.tolist())
        kept["channels"].append(ch.tolist())
        op, np_ = layer_parts(old_layer), layer_parts(new_layer)
        q_rows, kv_rows = _head_rows(qh, d), _head_rows(kvh, d)
        if op.qkv is not None:
            q_end = layout.num_heads * d
            kv_span = layout.num_kv_heads * d
            rows = torch.cat([q_rows, q_end + kv_rows, q_end + kv_span + kv_rows])
            _slice_linear(np_.qkv, op.qkv, rows, hidden_idx)
        else:
            _slice_linear(np_.q, op.q, q_rows, hidden_idx)
            _slice_linear(np_.k, op.k, kv_rows, hidden_idx)
            _slice_linear(np_.v, op.v, kv_rows, hidden_idx)
        _slice_linear(np_.o, op.o, hidden_idx, q_rows)
        if op.gate_up is not None:
            _slice_linear(
                np_.gate_up, op.gate_up, torch.cat([ch, mc.intermediate_size + ch]), hidden_idx
            )
        else:
            _slice_linear(np_.gate, op.gate, ch, hidden_idx)
            _slice_linear(np_.up, op.up, ch, hidden_idx)
        _slice_linear(np_.down, op.down, hidden_idx, ch)
        if hidden_idx is not None:
            new_norms = layer_norms(new_layer, plan.hidden_size)
            for name, norm in layer_norms(old_layer, mc.hidden_size).items():
                set_param(
                    new_norms[name], "weight", norm.weight.detach().index_select(0, hidden_idx)
                )
        fill_from(new_layer, old_layer, f"layer {i}")
        old_layer.to("meta")  # release the old layer's memory
    if hidden_idx is not None:
        emb = model.model.embed_tokens.weight.detach().index_select(1, hidden_idx)
        set_param(new.model.embed_tokens, "weight", emb)
        set_param(
            new.model.norm, "weight", model.model.norm.weight.detach().index_select(0, hidden_idx)
        )
        if not getattr(new.config, "tie_word_embeddings", False):
            set_param(
                new.lm_head, "weight", model.lm_head.weight.detach().index_select(1, hidden_idx)
            )
            if model.lm_head.bias is not None:
                set_param(new.lm_head, "bias", model.lm_head.bias.detach())
    if getattr(new.config, "tie_word_embeddings", False):
        new.lm_head.weight = new.model.embed_tokens.weight
    fill_from(new, model, "width pruning")
    if hidden_idx is not None:
        kept["hidden"] = hidden_idx.tolist()
    return finish(new, model), kept
