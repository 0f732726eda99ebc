"""Registry of pruning methods, keyed by the name used in config (``prune.method``).

Each method is a small set of pure functions; the engine (:mod:`medprune.prune.engine`)
decides when to call them. ``kind`` says which loop runs the method:

- ``mask``: ``score(weight, stats) -> scores``, then a keep-mask is selected (unstructured,
  per row or N:M) and applied. Magnitude and Wanda.
- ``update``: the weights are rewritten from calibration statistics (SparseGPT).
- ``width`` / ``depth``: structured; the result is a new, smaller model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from medprune.errors import PruneError
from medprune.prune.magnitude import magnitude_scores
from medprune.prune.wanda import wanda_scores

if TYPE_CHECKING:
    from medprune.prune.stats import InputStats

MethodKind = Literal["mask", "update", "width", "depth"]


@dataclass(frozen=True)
class PruneMethod:
    """A pruning method.

    ``score(weight, stats)`` returns importance scores shaped like ``weight`` (higher = keep);
    ``stats`` is the :class:`~medprune.prune.stats.InputStats` of the layer's input when
    ``needs_calibration``. ``row_wise`` selects within each output row (Wanda) instead of over
    the whole matrix. ``needs_hessian`` asks the engine for ``X^T X``.
    """

    name: str
    kind: MethodKind = "mask"
    score: Callable[[torch.Tensor, InputStats | None], torch.Tensor] | None = None
    needs_calibration: bool = False
    needs_hessian: bool = False
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
        raise PruneError(
            f"prune.method {name!r} is not known; available: {sorted(METHODS)}"
        ) from None


register_method(
    PruneMethod(
        name="magnitude",
        score=lambda weight, stats: magnitude_scores(weight),
        description="Unstructured or N:M by |W| over each weight matrix.",
    )
)


def _wanda_score(weight: torch.Tensor, stats: InputStats | None) -> torch.Tensor:
    if stats is None:
        raise PruneError(
            "wanda needs calibration statistics of the layer input; none were collected"
        )
    return wanda_scores(weight, stats.col_norm)


register_method(
    PruneMethod(
        name="wanda",
        score=_wanda_score,
        needs_calibration=True,
        row_wise=True,
        description="Unstructured (per output row) or N:M by |W| x ||X_j|| (Sun et al., 2023).",
    )
)
register_method(
    PruneMethod(
        name="sparsegpt",
        kind="update",
        needs_calibration=True,
        needs_hessian=True,
        description="Unstructured or N:M with OBS-style weight updates from X^T X "
        "(Frantar & Alistarh, 2023); options prune.sparsegpt.blocksize / dampening.",
    )
)
register_method(
    PruneMethod(
        name="width",
        kind="width",
        needs_calibration=True,
        description="Structured: remove attention heads (GQA-aware), MLP channels and optionally "
        "hidden channels by activation importance (Minitron); gives a smaller HF model.",
    )
)
register_method(
    PruneMethod(
        name="depth",
        kind="depth",
        needs_calibration=True,
        description="Structured: remove whole decoder layers with the lowest block influence "
        "(1 - cos(input, output), ShortGPT).",
    )
)
