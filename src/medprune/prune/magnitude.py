"""Magnitude pruning: the importance of a weight is its absolute value."""

from __future__ import annotations

import torch


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs()
