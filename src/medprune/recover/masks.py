"""Keep pruning masks intact during training."""

from __future__ import annotations

import torch
from torch import nn

from medprune.errors import RecoveryError
from medprune.prune.apply import prunable_linears


def capture_masks(model: nn.Module, exclude: list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Keep-masks (``weight != 0``) of every prunable linear layer that has zeros."""
    masks = {}
    for name, m in prunable_linears(model, exclude).items():
        keep = m.weight.detach() != 0
        if not keep.all():
            masks[name] = keep
    return masks


def mask_gradients(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for name, keep in masks.items():
        grad = modules[name].weight.grad
        if grad is not None:
            grad.mul_(keep.to(grad.dtype))


@torch.no_grad()
def reapply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero pruned weights again (the optimizer's weight decay or momentum may move them)."""
    modules = dict(model.named_modules())
    for name, keep in masks.items():
        w = modules[name].weight
        w.mul_(keep.to(device=w.device, dtype=w.dtype))


def verify_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Raise if any pruned weight is non-zero."""
    modules = dict(model.named_modules())
    for name, keep in masks.items():
        w = modules[name].weight.detach()
        leaked = int(((w != 0) & ~keep.to(w.device)).sum())
        if leaked:
            raise RecoveryError(f"{name}: {leaked} pruned weights became non-zero during recovery")
