"""Turn importance scores into keep-masks. Pure tensor functions; higher score = keep."""

from __future__ import annotations

import torch

from medprune.errors import PruneError


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise PruneError(f"sparsity must be in [0, 1), got {sparsity}")


def lowest_k(scores: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Bool mask of the ``k`` lowest entries along ``dim`` (``True`` = among the lowest),
    ties broken by position: exactly the first ``k`` of a stable ascending sort.

    A selection (``kthvalue``) and a count of the ties at the threshold instead of a sort:
    linear instead of ``n log n``, 1.5-3x faster than a stable ``argsort`` on weight rows
    and blocks. Scores must not be NaN (they come from finite weights).
    """
    size = scores.shape[dim]
    if not 0 <= k <= size:
        raise ValueError(f"k={k} is outside [0, {size}]")
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    threshold = torch.kthvalue(scores, k, dim=dim, keepdim=True).values
    below = scores < threshold
    at = scores == threshold
    # Of the entries equal to the threshold, the first (k - #below) by position.
    room = k - below.sum(dim, keepdim=True)
    return below | (at & (at.cumsum(dim) <= room))


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that zeroes exactly ``round(sparsity * numel)`` lowest-scoring entries.

    Ties are broken by position (as a stable sort would), so the result is deterministic.
    """
    _check_sparsity(sparsity)
    flat = scores.reshape(-1).float()
    n_prune = int(round(sparsity * flat.numel()))
    return (~lowest_k(flat, n_prune)).reshape(scores.shape)


def per_row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that prunes the same count ``round(sparsity * in_features)`` in every row
    (output channel), as Wanda does; ties broken by position."""
    _check_sparsity(sparsity)
    _rows, cols = scores.shape
    n_prune = int(round(sparsity * cols))
    return ~lowest_k(scores.float(), n_prune, dim=1)


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
