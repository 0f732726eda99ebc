"""Check a run's inputs (config, model folder, data files, URIs) before any work, without
loading weights. See :func:`medprune.preflight.run.preflight_run`."""

from medprune.preflight.findings import PreflightError, PreflightReport
from medprune.preflight.run import preflight_run

__all__ = ["PreflightError", "PreflightReport", "preflight_run"]
