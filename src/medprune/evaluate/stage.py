"""The evaluate stage: one model (baseline or candidate) on the configured clinical data."""

from __future__ import annotations

from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.runner import evaluate_model
from medprune.progress import Progress


def stage_evaluate(cfg: RunConfig, model_dir: str | Path, out_dir: str | Path, *, label: str, progress: Progress = print) -> dict:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return evaluate_model(model_dir, cfg.evaluate, out_dir, label=label, dtype=cfg.model.dtype, progress=progress)
