"""Compile the pipeline for Vertex AI, or run it on this machine with kfp.local.

This module is the one place outside ``components/`` and ``pipelines/`` that imports kfp.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.io.atomic import atomic_write_json
from medprune.evaluate.mcq import load_mcq
from medprune.io.jsonl import read_texts
from medprune.load.model import check_model_dir
from medprune.register.local import LocalRegistry
from medprune.register.stage import SUMMARY_FILE


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


def preflight(cfg: RunConfig) -> None:
    """Cheap checks of everything local a run will read or write, so bad input fails with a
    clear message before any stage starts (and before anything is registered)."""
    if cfg.registry.target == "local":
        LocalRegistry(cfg.registry.local.root).check_writable()
    if "://" not in cfg.model.source:
        try:
            check_model_dir(cfg.model.source)
        except MedpruneError as exc:
            raise MedpruneError(f"model.source: {exc}") from None
    local = lambda v: v is not None and "://" not in v  # noqa: E731
    if local(cfg.evaluate.mcq):
        load_mcq(cfg.evaluate.mcq, cfg.evaluate.max_items)
    if local(cfg.evaluate.perplexity):
        read_texts(cfg.evaluate.perplexity)
    if cfg.recover.enabled and local(cfg.recover.data):
        read_texts(cfg.recover.data)
    if local(cfg.prune.calibration.data):
        read_texts(cfg.prune.calibration.data)


def run_local(cfg: RunConfig, *, run_id: str | None = None) -> Path:
    """Run the whole pipeline with ``kfp.local.SubprocessRunner`` and write
    ``OUTPUT_DIR/RUN_ID/summary.json``; return its path.

    Components run as subprocesses of this Python (``use_venv=False``), so medprune must be
    installed in it. A failed stage raises :class:`MedpruneError` naming the stage.
    """
    from kfp import local

    from medprune.pipelines.medprune_pipeline import build_pipeline

    preflight(cfg)
    run_id = run_id or new_run_id(cfg)
    run_dir = Path(cfg.output_dir) / run_id
    if run_dir.exists():
        raise MedpruneError(f"run directory {run_dir} already exists")
    run_dir.mkdir(parents=True)
    pipeline_root = run_dir / "artifacts"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    pipeline = build_pipeline(cfg, local=True)
    try:
        pipeline(config_json=cfg.to_json())
    except RuntimeError as exc:
        raise MedpruneError(f"pipeline run {run_id} failed: {exc} (logs above; artifacts in {pipeline_root})") from None
    # Exactly one of the two branches (register / not-promoted) wrote a summary artifact:
    # PIPELINE_ROOT/<pipeline run>/<task>/summary/summary.json
    found = sorted(pipeline_root.glob(f"*/*/summary/{SUMMARY_FILE}"))
    if len(found) != 1:
        raise MedpruneError(f"pipeline run {run_id} finished with {len(found)} summaries under {pipeline_root}")
    summary = json.loads(found[0].read_text())
    summary["run_dir"] = str(run_dir)
    summary["artifacts"] = str(pipeline_root)
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

