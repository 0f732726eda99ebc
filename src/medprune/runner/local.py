"""One local runner for every pipeline: ``kfp.local.SubprocessRunner`` in a run folder.

kfp's logs and every task's output go to ``RUN_DIR/run.log``; the terminal gets one line per
task start and end, the stages' progress lines and the log's path (everything with
``verbose``). Components run as subprocesses of this Python (``use_venv=False``), so medprune
must be installed in it. A failed task raises :class:`MedpruneError` naming the task, its
message and the log; the run folder is then marked ``FAILED`` and keeps no empty folders.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from medprune.errors import MedpruneError
from medprune.run_log import RunLog, strip_ansi

LOG_FILE = "run.log"
FAILED_FILE = "FAILED"


@dataclass(frozen=True)
class LocalRun:
    """Where a finished local run put things."""

    run_id: str
    run_dir: Path
    pipeline_root: Path  # kfp's artifacts: PIPELINE_ROOT/<pipeline run>/<task>/<output>
    log: Path


def compile_spec(pipeline: Any, output: str | Path) -> Path:
    """Write the Vertex-ready spec (YAML) of the built ``pipeline`` to ``output``, atomically."""
    from kfp import compiler

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.yaml")
    compiler.Compiler().compile(pipeline, package_path=str(tmp))
    tmp.replace(output)
    return output


def mark_failed(run_dir: Path, message: str) -> None:
    """Remove the empty folders a failed run leaves (kfp makes every output folder up front)
    and write ``RUN_DIR/FAILED`` with the reason, so no folder looks like a finished run."""
    for path in sorted(run_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    (run_dir / FAILED_FILE).write_text(message + "\n", encoding="utf-8")


def run_pipeline_local(
    run: Callable[[], object],
    run_dir: str | Path,
    run_id: str,
    *,
    what: str = "pipeline run",
    verbose: bool = False,
    terminal: TextIO | None = None,
) -> LocalRun:
    """Make ``run_dir`` (refused when it exists) and call ``run()``, which builds a pipeline and
    calls it, with ``kfp.local`` set up to write its artifacts under ``run_dir/artifacts``.
    ``what`` names the run in the failure message (``"search run"``)."""
    from kfp import local

    terminal = terminal or sys.stdout
    run_dir = Path(run_dir)
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
            try:
                run()
                error = None
            except RuntimeError as exc:
                error = str(exc)
            except BaseException as exc:  # interrupted: say so in the run folder, then stop
                mark_failed(run_dir, f"run stopped: {type(exc).__name__}\nfull log: {log_path}")
                raise
        failure = log.failure
    if error is not None:
        if failure:
            message = f"{failure[0]} failed: {failure[1]}"
        else:
            message = f"{what} {run_id} failed: {strip_ansi(error)}"
        mark_failed(run_dir, f"{message}\nfull log: {log_path}")
        raise MedpruneError(f"{message} (full log: {log_path})")
    return LocalRun(run_id, run_dir, pipeline_root, log_path)
