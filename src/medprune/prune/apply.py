"""Apply keep-masks to weights and measure sparsity."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def apply_mask(linear: nn.Linear, keep: torch.Tensor) -> None:
    """Zero the weights of ``linear`` where ``keep`` is False (in place)."""
    if keep.shape != linear.weight.shape:
        raise ValueError(
            f"mask shape {tuple(keep.shape)} != weight shape {tuple(linear.weight.shape)}"
        )
    linear.weight.mul_(keep.to(device=linear.weight.device, dtype=linear.weight.dtype))


def is_excluded(name: str, exclude: list[str] | tuple[str, ...]) -> bool:
    return any(pattern in name for pattern in exclude)


def prunable_linears(
    module: nn.Module, exclude: list[str] | tuple[str, ...] = ()
) -> dict[str, nn.Linear]:
    """All ``nn.Linear`` submodules of ``module`` whose name matches no ``exclude`` substring."""
    return {
        name: m
        for name, m in module.named_modules()
        if isinstance(m, nn.Linear) and not is_excluded(name, exclude)
    }


def weight_masks(
    model: nn.Module, exclude: list[str] | tuple[str, ...] = ("lm_head", "embed_tokens")
) -> dict[str, torch.Tensor]:
    """Keep-masks derived from the zeros of each prunable linear weight (``weight != 0``)."""
    return {name: (m.weight != 0) for name, m in prunable_linears(model, exclude).items()}


def sparsity_report(
    model: nn.Module, exclude: list[str] | tuple[str, ...] = ("lm_head", "embed_tokens")
) -> dict:
    """Exact zero counts per prunable linear layer and overall.

    Returns ``{"layers": {name: {"zeros", "numel", "sparsity"}}, "zeros", "numel", "sparsity",
    "total_params", "nonzero_params"}``; totals count every parameter of the model.
    """
    layers = {}
    zeros = numel = 0
    for name, m in prunable_linears(model, exclude).items():
        n = m.weight.numel()
        z = n - int(torch.count_nonzero(m.weight))  # count_nonzero allocates no int64 copy
        layers[name] = {"zeros": z, "numel": n, "sparsity": z / n}
        zeros += z
        numel += n
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return {
        "layers": layers,
        "zeros": zeros,
        "numel": numel,
        "sparsity": zeros / numel if numel else 0.0,
        "total_params": total,
        "nonzero_params": nonzero,
    }
