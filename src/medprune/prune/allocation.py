"""Per-layer sparsity allocation on top of a global target.

OWL (Yin et al., 2024, "Outlier Weighed Layerwise sparsity"): layers with more outlier
weights (Wanda score above ``threshold`` times the layer mean) keep more weights. Ratios
are spread over ``[target - lam, target + lam]`` and re-centred so that their mean is the
target; with equal-sized layers the global sparsity is unchanged.
"""

from __future__ import annotations

import torch


def outlier_ratio(scores: list[torch.Tensor], threshold: float) -> float:
    """Fraction of entries of one layer's Wanda scores above ``threshold`` x their mean."""
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    return float((flat > threshold * flat.mean()).float().mean())


def owl_sparsities(outlier_ratios: list[float], target: float, lam: float) -> list[float]:
    """Per-layer sparsities: the most outlier-rich layer gets ``target - lam`` (about),
    the poorest ``target + lam``, and the mean is ``target``."""
    r = torch.tensor(outlier_ratios, dtype=torch.float64)
    span = float(r.max() - r.min())
    if span == 0.0:
        return [target] * len(outlier_ratios)
    scaled = (r - r.min()) / span * (2 * lam)
    density = scaled - scaled.mean() + (1.0 - target)
    return [float(1.0 - d) for d in density]
