"""Structured depth pruning (ShortGPT, Men et al., 2024): remove whole decoder layers with
the lowest block influence ``BI = 1 - cos(x_in, x_out)``, averaged over calibration tokens.
A layer that barely changes its input can go."""

from __future__ import annotations

import math

import torch
from torch import nn

from medprune.errors import PruneError
from medprune.prune.structure import fill_from, finish, skeleton


def block_influence(hidden_in: torch.Tensor, hidden_out: torch.Tensor) -> tuple[float, int]:
    """Sum over tokens of ``1 - cos(in, out)`` and the token count (to average later)."""
    a = hidden_in.reshape(-1, hidden_in.shape[-1]).double()
    b = hidden_out.reshape(-1, hidden_out.shape[-1]).double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return float((1.0 - cos).sum()), a.shape[0]


def layers_to_drop(influence: list[float], count: int) -> list[int]:
    """Indices (ascending) of the ``count`` layers of lowest influence; ties by position."""
    order = torch.argsort(torch.tensor(influence, dtype=torch.float64), stable=True)
    return sorted(int(i) for i in order[:count])


def smallest_share(num_layers: int) -> float:
    """The smallest ``prune.sparsity`` (3 decimals) whose rounded layer count is one."""
    share = math.ceil(500 / num_layers) / 1000
    while round(share * num_layers) < 1:
        share = round(share + 0.001, 3)
    return share


def depth_count(num_layers: int, sparsity: float, explicit: list[int] | None) -> int:
    """How many layers to remove; raises naming the value if it is impossible."""
    if explicit is not None:
        bad = [i for i in explicit if i >= num_layers]
        if bad:
            raise PruneError(
                f"prune.structured.layers_to_remove has indices {bad}; the model has layers "
                f"0..{num_layers - 1}"
            )
        count = len(explicit)
        if count == 0:
            raise PruneError(
                "depth pruning: prune.structured.layers_to_remove is empty; name at least one "
                f"layer (0..{num_layers - 1}) or leave it unset to use prune.sparsity"
            )
    else:
        count = int(round(sparsity * num_layers))
        if count == 0:
            raise PruneError(
                f"depth pruning: prune.sparsity={sparsity} of {num_layers} layers rounds to "
                f"{count} layers to remove (round({sparsity} x {num_layers})); the smallest "
                f"prune.sparsity that removes one layer is {smallest_share(num_layers)} "
                f"(1/{num_layers} = {1 / num_layers:.4g} removes exactly one), or name layers "
                "in prune.structured.layers_to_remove"
            )
    if count >= num_layers:
        raise PruneError(
            f"depth pruning would remove all {num_layers} layers (prune.sparsity={sparsity}, "
            f"layers_to_remove={explicit}); allowed: at most {num_layers - 1} layers"
        )
    return count


def dense_layer_origin(
    previous: list[int] | None, layers_before: int, removed: list[int] | None
) -> list[int]:
    """The dense model's index of each decoder layer after a pruning step: ``previous`` (the
    input model's own record, ``None`` for a dense model of ``layers_before`` layers)
    without the ``removed`` positions. Recorded beside every pruned model (lineage
    ``dense_layers``) so that recovery can pair each layer with the teacher layer it came
    from, through chained pruning steps too."""
    origin = [int(i) for i in previous] if previous is not None else list(range(layers_before))
    if len(origin) != layers_before:
        raise PruneError(
            f"the input model's lineage dense_layers has {len(origin)} entries for its "
            f"{layers_before} layers"
        )
    gone = set(removed or ())
    return [o for i, o in enumerate(origin) if i not in gone]


@torch.no_grad()
def build_depth_model(model: nn.Module, drop: list[int]) -> nn.Module:
    """A new model without the decoder layers ``drop``; kept layers are shared, not copied."""
    old_layers = model.model.layers
    keep = [i for i in range(len(old_layers)) if i not in set(drop)]
    updates: dict[str, object] = {"num_hidden_layers": len(keep)}
    if getattr(model.config, "layer_types", None):
        updates["layer_types"] = [model.config.layer_types[i] for i in keep]
    new = skeleton(model, **updates)
    for j, i in enumerate(keep):
        state = old_layers[i].state_dict()
        new.model.layers[j].load_state_dict(state, assign=True)
        fill_from(new.model.layers[j], old_layers[i], f"layer {i}")
        attn = new.model.layers[j].self_attn
        if hasattr(attn, "layer_idx"):
            attn.layer_idx = j
    fill_from(new, model, "depth pruning")
    for i in drop:
        old_layers[i].to("meta")
    return finish(new, model)
