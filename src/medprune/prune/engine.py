"""Prune a causal LM layer by layer according to a :class:`~medprune.config.PruneConfig`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medprune.config import PruneConfig
from medprune.errors import PruneError
from medprune.load.model import SUPPORTED_MODEL_TYPES
from medprune.prune.apply import apply_mask, prunable_linears, sparsity_report
from medprune.prune.methods import get_method
from medprune.prune.select import nm_mask, per_row_mask, unstructured_mask


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a supported causal LM."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise PruneError(
            f"model type {model_type!r} is not supported for pruning; supported: {list(SUPPORTED_MODEL_TYPES)}"
        )
    try:
        return model.model.layers
    except AttributeError:
        raise PruneError(f"{type(model).__name__} has no model.layers decoder stack") from None


def select_mask(scores: torch.Tensor, cfg: PruneConfig, row_wise: bool) -> torch.Tensor:
    if cfg.nm is not None:
        return nm_mask(scores, *cfg.nm)
    if row_wise:
        return per_row_mask(scores, cfg.sparsity)
    return unstructured_mask(scores, cfg.sparsity)


@torch.no_grad()
def prune_model(
    model: nn.Module,
    cfg: PruneConfig,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Prune ``model`` in place and return its :func:`sparsity_report`.

    Embeddings, ``lm_head`` and modules matching ``cfg.exclude`` are never pruned.
    """
    method = get_method(cfg.method)
    if method.needs_calibration:
        raise PruneError(f"prune.method {cfg.method!r} needs calibration data (prune.calibration.data)")
    layers = decoder_layers(model)
    for index, layer in enumerate(layers):
        for name, linear in prunable_linears(layer, cfg.exclude).items():
            scores = method.score(linear.weight, None)
            apply_mask(linear, select_mask(scores, cfg, method.row_wise))
        if progress:
            progress(f"pruned layer {index + 1}/{len(layers)}")
    return sparsity_report(model, cfg.exclude)
