"""The report stage: the HTML and Markdown report of the gate, and the confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.runner import NOTES_FILE, read_predictions, read_results
from medprune.gate.stage import GATE_FILE
from medprune.progress import Progress


def stage_report(
    cfg: RunConfig,
    *,
    gate_dir: str | Path,
    baseline_dir: str | Path,
    candidate_dir: str | Path,
    out_dir: str | Path,
    run_id: str = "",
    progress: Progress = print,
) -> dict:
    """Render the HTML and Markdown report of the gate into ``out_dir``; return
    ``{"html": path, "md": path, "confusion": {"labels": [..], "matrix": [[..]]}}``."""
    from medprune.report.data import confusion_matrix
    from medprune.report.html import render_report

    gate = json.loads((Path(gate_dir) / GATE_FILE).read_text())
    candidate_predictions = read_predictions(candidate_dir)
    run_info = {
        "run": run_id or cfg.run_name,
        "model": cfg.model.name,
        "source": cfg.model.source,
        "method": cfg.prune.method,
        "sparsity": cfg.prune.sparsity,
        "pattern": cfg.prune.pattern,
    }
    paths = render_report(
        out_dir,
        gate=gate,
        baseline=read_results(baseline_dir),
        candidate=read_results(candidate_dir),
        baseline_predictions=read_predictions(baseline_dir),
        candidate_predictions=candidate_predictions,
        critical_ids=cfg.gate.critical_items,
        run_info=run_info,
        baseline_notes=read_predictions(baseline_dir, NOTES_FILE),
        candidate_notes=read_predictions(candidate_dir, NOTES_FILE),
    )
    labels, matrix = confusion_matrix(candidate_predictions or [])
    progress(f"report: {paths['html']}")
    return {
        "html": str(paths["html"]),
        "md": str(paths["md"]),
        "confusion": {"labels": labels, "matrix": matrix},
    }
