"""Wanda (Sun et al., 2023): the importance of weight ``W[i, j]`` is ``|W[i, j]| * ||X_j||``,
the weight's magnitude times the L2 norm of its input feature over the calibration tokens.
Weights are compared within each output row."""

from __future__ import annotations

import torch


def wanda_scores(weight: torch.Tensor, col_norm: torch.Tensor) -> torch.Tensor:
    """``|W| * ||X_j||`` broadcast over rows; ``col_norm`` has one entry per input feature."""
    if col_norm.shape != (weight.shape[1],):
        raise ValueError(f"col_norm shape {tuple(col_norm.shape)} != ({weight.shape[1]},)")
    return weight.detach().abs().float() * col_norm.to(weight.device).float().unsqueeze(0)
