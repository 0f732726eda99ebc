"""Compile and run any medprune pipeline (the stage pipeline, the search pipeline) the same way:
:func:`compile_spec` writes a Vertex-ready spec atomically; :func:`run_pipeline_local` runs one
with ``kfp.local`` into a run folder that holds ``run.log`` and, when it fails, ``FAILED``."""

from medprune.runner.local import (
    FAILED_FILE,
    LOG_FILE,
    LocalRun,
    compile_spec,
    mark_failed,
    run_pipeline_local,
)

__all__ = [
    "FAILED_FILE",
    "LOG_FILE",
    "LocalRun",
    "compile_spec",
    "mark_failed",
    "run_pipeline_local",
]
