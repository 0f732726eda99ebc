"""Compile the pipeline for Vertex AI, or run it on this machine with kfp.local.

This module is the one place outside ``components/`` and ``pipelines/`` that imports kfp.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.io.atomic import atomic_write_json
from medprune.preflight import PreflightReport, preflight_run
from medprune.register.stage import SUMMARY_FILE
from medprune.run_log import RunLog, strip_ansi


def compile_pipeline(cfg: RunConfig, output: str | Path) -> Path:
    """Write the Vertex-ready pipeline spec (YAML) for ``cfg`` to ``output``, atomically."""
    from kfp import compiler

    from medprune.pipelines.medprune_pipeline import build_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.yaml")
    compiler.Compiler().compile(build_pipeline(cfg), package_path=str(tmp))
    tmp.replace(output)
    return output


def new_run_id(cfg: RunConfig) -> str:
    return f"{cfg.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def preflight(cfg: RunConfig, *, local_run: bool = True) -> PreflightReport:
    """Every check of the run's inputs that needs no weights (model folder, every data file
    in full, URIs, output places); raises :class:`PreflightError` listing each problem on
    one line, before any stage starts and before anything is registered."""
    report = preflight_run(cfg, local_run=local_run)
    report.raise_for_errors()
    return report


LOG_FILE = "run.log"
FAILED_FILE = "FAILED"


def _mark_failed(run_dir: Path, message: str) -> None:
    """Remove the empty folders a failed run leaves (kfp makes every output folder up front)
    and write ``RUN_DIR/FAILED`` with the reason, so no folder looks like a finished run."""
    for path in sorted(run_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    (run_dir / FAILED_FILE).write_text(message + "\n", encoding="utf-8")


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
    from kfp import local

    from medprune.pipelines.medprune_pipeline import build_pipeline

    if not checked:
        preflight(cfg)
    terminal = terminal or sys.stdout
    run_id = run_id or new_run_id(cfg)
    run_dir = Path(cfg.output_dir) / run_id
    if run_dir.exists():
        raise MedpruneError(f"run directory {run_dir} already exists")
    run_dir.mkdir(parents=True)
    pipeline_root = run_dir / "artifacts"
    log_path = run_dir / LOG_FILE
    with RunLog(log_path, terminal, verbose=verbose) as log:
        log.note(f"run {run_id}: full log in {log_path}")
        with log.capture():
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(pipeline_root),
                raise_on_error=True,
            )
            pipeline = build_pipeline(cfg, local=True)
            try:
                pipeline(config_json=cfg.to_json())
                error = None
            except RuntimeError as exc:
                error = str(exc)
            except BaseException as exc:  # interrupted: say so in the run folder, then stop
                _mark_failed(run_dir, f"run stopped: {type(exc).__name__}\nfull log: {log_path}")
                raise
        failure = log.failure
    if error is not None:
        if failure:
            message = f"{failure[0]} failed: {failure[1]}"
        else:
            message = f"pipeline run {run_id} failed: {strip_ansi(error)}"
        _mark_failed(run_dir, f"{message}\nfull log: {log_path}")
        raise MedpruneError(f"{message} (full log: {log_path})")
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
