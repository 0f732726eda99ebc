"""The evaluate stage: one model (baseline or candidate) on the configured clinical data."""

from __future__ import annotations

from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.runner import evaluate_model
from medprune.progress import Progress


def stage_evaluate(
    cfg: RunConfig,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    label: str,
    progress: Progress = print,
) -> dict:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    _report_truncation(cfg, model_dir, label, progress)
    return evaluate_model(
        model_dir, cfg.evaluate, out_dir, label=label, dtype=cfg.model.dtype, progress=progress
    )


def _report_truncation(
    cfg: RunConfig, model_dir: str | Path, label: str, progress: Progress
) -> None:
    """Say how many items the scorer will cut to fit ``evaluate.seq_len``, and by how much."""
    from transformers import AutoTokenizer

    from medprune.preflight.data import truncation_warnings

    if not (cfg.evaluate.mcq or cfg.evaluate.mcq_sources or cfg.evaluate.summarization):
        return
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for line in truncation_warnings(cfg, tokenizer):
        progress(f"[{label}] warning: {line}")
