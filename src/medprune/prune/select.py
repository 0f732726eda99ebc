"""Turn importance scores into keep-masks. Pure tensor functions; higher score = keep."""

from __future__ import annotations

import torch

from medprune.errors import PruneError


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise PruneError(f"sparsity must be in [0, 1), got {sparsity}")


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that zeroes exactly ``round(sparsity * numel)`` lowest-scoring entries.

    Ties are broken by position (stable sort), so the result is deterministic.
    """
    _check_sparsity(sparsity)
    flat = scores.reshape(-1).float()
    n_prune = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_prune:
        order = torch.argsort(flat, stable=True)
        keep[order[:n_prune]] = False
    return keep.reshape(scores.shape)


def per_row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that prunes the same count ``round(sparsity * in_features)`` in every row
    (output channel), as Wanda does."""
    _check_sparsity(sparsity)
    rows, cols = scores.shape
    n_prune = int(round(sparsity * cols))
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune:
        order = torch.argsort(scores.float(), dim=1, stable=True)
        keep.scatter_(1, order[:, :n_prune], False)
    return keep


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M keep-mask along the input dimension: in every group of ``m`` consecutive
    weights of a row, only the ``n`` highest-scoring ones are kept (at most N non-zeros in
    every M, the convention of NVIDIA's 2:4 sparse tensor cores)."""
    if not 0 < n < m:
        raise PruneError(f"N:M needs 0 < N < M, got {n}:{m}")
    rows, cols = scores.shape
    if cols % m:
        raise PruneError(f"N:M pattern {n}:{m} needs in_features divisible by {m}, got {cols}")
    grouped = scores.float().reshape(rows, cols // m, m)
    order = torch.argsort(grouped, dim=2, stable=True)
    keep = torch.ones_like(grouped, dtype=torch.bool)
    keep.scatter_(2, order[:, :, : m - n], False)
    return keep.reshape(rows, cols)
