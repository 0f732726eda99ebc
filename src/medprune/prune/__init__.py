"""Pruning: score -> select -> apply, one registry of methods, one entry point.

    from medprune.prune import prune_model, load_calibration_texts
    texts = load_calibration_texts("calibration.jsonl")
    result = prune_model(model, tokenizer, cfg.prune, calib_texts=texts, progress=print)

Statistics of the dense model that every candidate of a search can share (calibration token
ids, input energies, block influence) are collected once and passed as ``dense``
(:mod:`medprune.prune.dense`)::

    dense = collect_dense_calibration(model, tokenizer, cfg.prune, texts)
    result = prune_model(fresh_dense_copy, tokenizer, cfg.prune, dense=dense)
"""

from medprune.prune.calibration import load_calibration_texts
from medprune.prune.dense import DenseCalibration
from medprune.prune.engine import PruneResult, collect_dense_calibration, prune_model
from medprune.prune.methods import METHODS, get_method

__all__ = [
    "METHODS",
    "DenseCalibration",
    "PruneResult",
    "collect_dense_calibration",
    "get_method",
    "load_calibration_texts",
    "prune_model",
]
