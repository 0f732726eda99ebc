"""The prune stage: prune the dense model per ``cfg.prune`` and save it with its report."""

from __future__ import annotations

import time
from pathlib import Path

from medprune.config import RunConfig
from medprune.load.lineage import read_lineage, save_with_lineage
from medprune.load.model import load_model
from medprune.progress import Progress
from medprune.prune.calibration import load_calibration_texts
from medprune.prune.dense import DenseCalibration
from medprune.prune.depth import dense_layer_origin
from medprune.prune.engine import prune_model


def stage_prune(
    cfg: RunConfig,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    progress: Progress = print,
    dense: DenseCalibration | None = None,
) -> dict:
    """Prune the dense model per ``cfg.prune`` and save the pruned model. ``dense``: the
    model's calibration statistics collected once (a search shares them between its
    candidates, :mod:`medprune.prune.dense`); they replace the calibration texts."""
    model, tokenizer = load_model(model_dir, dtype=cfg.model.dtype)
    layers_before = model.config.get_text_config().num_hidden_layers
    t0 = time.perf_counter()
    texts = None
    if cfg.prune.calibration.data and dense is None:
        texts = load_calibration_texts(cfg.prune.calibration.data)
    result = prune_model(
        model, tokenizer, cfg.prune, calib_texts=texts, progress=progress, dense=dense
    )
    model, report = result.model, result.report
    report["seconds"] = time.perf_counter() - t0
    lineage = read_lineage(model_dir)
    lineage["prune"] = report
    lineage["dense_layers"] = dense_layer_origin(
        lineage.get("dense_layers"), layers_before, report.get("removed_layers")
    )
    save_with_lineage(model, tokenizer, out_dir, cfg, lineage, terms_from=model_dir)
    progress(
        f"pruned with {cfg.prune.method}: sparsity {report['sparsity']:.4f} over {len(report['layers'])} layers"
    )
    return report
