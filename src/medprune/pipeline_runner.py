"""Compile the stage pipeline for Vertex AI, or run it on this machine with kfp.local
(through :mod:`medprune.runner`, which runs the search pipeline the same way)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TextIO

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.io.atomic import atomic_write_json
from medprune.preflight import PreflightReport, preflight_run
from medprune.register.stage import SUMMARY_FILE
from medprune.runner import compile_spec, run_pipeline_local


def compile_pipeline(cfg: RunConfig, output: str | Path) -> Path:
    """Write the Vertex-ready pipeline spec (YAML) for ``cfg`` to ``output``, atomically."""
    from medprune.pipelines.medprune_pipeline import build_pipeline

    return compile_spec(build_pipeline(cfg), output)


def new_run_id(cfg: RunConfig) -> str:
    return f"{cfg.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def preflight(cfg: RunConfig, *, local_run: bool = True) -> PreflightReport:
    """Every check of the run's inputs that needs no weights (model folder, every data file
    in full, URIs, output places); raises :class:`PreflightError` listing each problem on
    one line, before any stage starts and before anything is registered."""
    report = preflight_run(cfg, local_run=local_run)
    report.raise_for_errors()
    return report


def run_local(
    cfg: RunConfig,
    *,
    run_id: str | None = None,
    verbose: bool = False,
    terminal: TextIO | None = None,
    checked: bool = False,
) -> Path:
    """Run the whole pipeline with ``kfp.local.SubprocessRunner`` and write
    ``OUTPUT_DIR/RUN_ID/summary.json``; return its path.

    The preflight runs first (skipped when the caller ran it: ``checked``). kfp's logs and
    every task's output go to ``RUN_DIR/run.log``; ``terminal`` (default stdout) gets one
    line per task start and end, the stages' progress lines and the log's path (everything
    with ``verbose``). Components run as subprocesses of this Python (``use_venv=False``),
    so medprune must be installed in it. A failed task raises :class:`MedpruneError` with the
    message that explains it and the log's path; the run folder is marked ``FAILED``.
    """
    from medprune.pipelines.medprune_pipeline import build_pipeline

    if not checked:
        preflight(cfg)
    run_id = run_id or new_run_id(cfg)
    run = run_pipeline_local(
        lambda: build_pipeline(cfg, local=True)(config_json=cfg.to_json()),
        Path(cfg.output_dir) / run_id,
        run_id,
        verbose=verbose,
        terminal=terminal,
    )
    run_dir, pipeline_root, log_path = run.run_dir, run.pipeline_root, run.log
    # Exactly one of the two branches (register / not-promoted) wrote a summary artifact:
    # PIPELINE_ROOT/<pipeline run>/<task>/summary/summary.json
    found = sorted(pipeline_root.glob(f"*/*/summary/{SUMMARY_FILE}"))
    if len(found) != 1:
        raise MedpruneError(
            f"pipeline run {run_id} finished with {len(found)} summaries under {pipeline_root}"
        )
    summary = json.loads(found[0].read_text())
    summary["run_dir"] = str(run_dir)
    summary["artifacts"] = str(pipeline_root)
    summary["log"] = str(log_path)
    # The gate task's HTML/Markdown report artifacts: PIPELINE_ROOT/<run>/<task>/report_html
    for name, suffix in (("report_html", "html"), ("report_md", "md")):
        reports = sorted(p for p in pipeline_root.glob(f"*/*/{name}") if p.is_file())
        if reports:
            copied = run_dir / f"report.{suffix}"
            shutil.copyfile(reports[0], copied)
            summary["report" if suffix == "html" else "report_md"] = str(copied)
    out = run_dir / SUMMARY_FILE
    atomic_write_json(out, summary)
    return out
