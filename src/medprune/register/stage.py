"""The register stage: register a candidate that passed the gate (local or Vertex AI),
or record that it was not promoted; both write the run's ``summary.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.evaluate.runner import flat_metrics, read_results
from medprune.export.bundle import with_serving_exports
from medprune.gate.decision import GateDecision
from medprune.gate.stage import GATE_FILE
from medprune.io.atomic import IncompleteDirectoryError, atomic_write_json, check_complete
from medprune.load.lineage import read_lineage
from medprune.progress import Progress
from medprune.register.local import LocalRegistry, refuse_non_finite_metrics

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class RunArtifacts:
    """The artifacts of one run that registering (or not promoting) reads and writes."""

    run_id: str
    model_dir: str | Path  # the candidate model
    gate_dir: str | Path  # holds gate.json
    baseline_dir: str | Path  # the dense model's evaluation
    candidate_dir: str | Path  # the candidate's evaluation
    summary_dir: str | Path  # where summary.json goes


def build_summary(
    cfg: RunConfig,
    run: RunArtifacts,
    *,
    registered: dict | None = None,
) -> dict:
    """The run's summary: gate decision, what was registered, metrics and lineage."""
    gate = json.loads((Path(run.gate_dir) / GATE_FILE).read_text())
    lineage = read_lineage(run.model_dir)
    prune = lineage.get("prune", {})
    baseline, candidate = read_results(run.baseline_dir), read_results(run.candidate_dir)
    return {
        "run_id": run.run_id,
        "run_name": cfg.run_name,
        "model": cfg.model.name,
        "source": cfg.model.source,
        "gate": gate,
        "registered": registered,
        "sparsity": prune.get("sparsity"),
        "prune": {k: v for k, v in prune.items() if k != "layers"},
        "recover": {k: v for k, v in lineage.get("recover", {}).items() if k != "losses"},
        "metrics": {
            "baseline": flat_metrics(baseline, "baseline"),
            "candidate": flat_metrics(candidate, "candidate"),
        },
        "evaluation": {"baseline": baseline, "candidate": candidate},
    }


def stage_register(
    cfg: RunConfig,
    run: RunArtifacts,
    *,
    progress: Progress = print,
) -> dict:
    """Register the candidate if (and only if) the gate passed; write ``summary.json``."""
    gate = GateDecision.from_dict(json.loads((Path(run.gate_dir) / GATE_FILE).read_text()))
    if not gate.passed:
        raise MedpruneError(
            "refusing to register: the gate did not pass: " + "; ".join(gate.reasons)
        )
    try:
        check_complete(run.model_dir)  # never register a half-written model directory
    except IncompleteDirectoryError as exc:
        raise MedpruneError(f"refusing to register: {exc}") from None
    summary = build_summary(cfg, run)
    refuse_non_finite_metrics(summary["metrics"])
    metadata = {
        k: summary[k]
        for k in ("run_id", "source", "gate", "sparsity", "prune", "recover", "metrics")
    }
    metadata["config"] = json.loads(cfg.to_json())
    # registry.export: serving formats (GGUF + Modelfile) registered with the model files
    with with_serving_exports(
        run.model_dir, list(cfg.registry.export), serve=cfg.serve, name=cfg.model.name
    ) as model_dir:
        if cfg.registry.export:
            metadata["exports"] = list(cfg.registry.export)
            progress(f"exported {', '.join(cfg.registry.export)} for {cfg.model.name}")
        return _register(cfg, run, summary, metadata, gate, model_dir, progress)


def _register(
    cfg: RunConfig,
    run: RunArtifacts,
    summary: dict,
    metadata: dict,
    gate: GateDecision,
    model_dir: Path,
    progress: Progress,
) -> dict:
    if cfg.registry.target == "vertex":
        from medprune.register.vertex import register_vertex

        metrics = {**summary["metrics"]["baseline"], **summary["metrics"]["candidate"]}
        registered = register_vertex(
            model_dir,
            cfg=cfg,
            metadata={"run_id": run.run_id, "metrics": metrics},
            gate_passed=gate.passed,
        )
        # model / version / path: the keys the local registry reports, so summaries read alike
        summary["registered"] = {
            "target": "vertex",
            "model": cfg.model.name,
            "version": registered["version_id"],
            "path": registered["uri"],
            **registered,
        }
        atomic_write_json(Path(run.summary_dir) / SUMMARY_FILE, summary)
        progress(f"registered {registered['versioned_name']} (aliases {registered['aliases']})")
        return summary
    registry = LocalRegistry(cfg.registry.local.root)
    version = registry.register(cfg.model.name, model_dir, metadata, aliases=cfg.registry.aliases)
    summary["registered"] = version.to_dict()
    atomic_write_json(Path(run.summary_dir) / SUMMARY_FILE, summary)
    progress(
        f"registered {version.model} version {version.version} at {version.path} (aliases {version.aliases})"
    )
    return summary


def stage_not_promoted(
    cfg: RunConfig,
    run: RunArtifacts,
    *,
    progress: Progress = print,
) -> dict:
    """Record that the gate failed and nothing was promoted, with the reasons."""
    summary = build_summary(cfg, run)
    atomic_write_json(Path(run.summary_dir) / SUMMARY_FILE, summary)
    progress("gate FAILED, nothing promoted: " + "; ".join(summary["gate"]["reasons"]))
    return summary
