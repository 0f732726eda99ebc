"""Registry of pruning methods, keyed by the name used in config (``prune.method``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from medprune.errors import PruneError
from medprune.prune.magnitude import magnitude_scores


@dataclass(frozen=True)
class PruneMethod:
    """A pruning method.

    ``score(weight, stats)`` returns importance scores shaped like ``weight`` (higher = keep);
    ``stats`` holds calibration statistics for that layer when ``needs_calibration``.
    ``row_wise`` selects within each output row (Wanda) instead of over the whole matrix.
    """

    name: str
    score: Callable[[torch.Tensor, dict | None], torch.Tensor]
    needs_calibration: bool = False
    row_wise: bool = False
    description: str = ""


METHODS: dict[str, PruneMethod] = {}


def register_method(method: PruneMethod) -> PruneMethod:
    if method.name in METHODS:
        raise ValueError(f"pruning method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> PruneMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise PruneError(f"prune.method {name!r} is not known; available: {sorted(METHODS)}") from None


register_method(
    PruneMethod(
        name="magnitude",
        score=lambda weight, stats: magnitude_scores(weight),
        description="Unstructured or N:M by |W| over each weight matrix.",
    )
)
