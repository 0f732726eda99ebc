"""Pruning: score -> select -> apply, one registry of methods, one entry point.

    from medprune.prune import prune_model, load_calibration_texts
    texts = load_calibration_texts("calibration.jsonl")
    result = prune_model(model, tokenizer, cfg.prune, calib_texts=texts, progress=print)
"""

from medprune.prune.calibration import load_calibration_texts
from medprune.prune.engine import PruneResult, prune_model
from medprune.prune.methods import METHODS, get_method

__all__ = ["METHODS", "PruneResult", "get_method", "load_calibration_texts", "prune_model"]
