"""The pipeline's stages as plain functions: one call per kfp component.

Each stage reads its inputs from directories, does its work with the library, and writes
its outputs into directories it is given (kfp artifact paths on Vertex, local folders in
tests). Nothing here imports kfp, so the same code runs in tests, locally and on Vertex.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.evaluate.runner import evaluate_model, flat_metrics, read_predictions, read_results
from medprune.gate.decision import GateDecision, decide
from medprune.io.atomic import atomic_write_json
from medprune.load.model import DTYPES, load_model, save_model
from medprune.load.resolve import resolve_model_source
from medprune.prune.apply import sparsity_report
from medprune.prune.calibration import load_calibration_texts
from medprune.prune.engine import prune_model
from medprune.register.local import LocalRegistry

CONFIG_FILE = "medprune_config.json"
LINEAGE_FILE = "medprune_lineage.json"
GATE_FILE = "gate.json"
SUMMARY_FILE = "summary.json"

Progress = Callable[[str], None]


def _lineage(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / LINEAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(model, tokenizer, out_dir: str | Path, cfg: RunConfig, lineage: dict) -> None:
    save_model(
        model,
        tokenizer,
        out_dir,
        extra_files={CONFIG_FILE: json.loads(cfg.to_json()), LINEAGE_FILE: lineage},
    )


def stage_load(cfg: RunConfig, out_dir: str | Path, *, progress: Progress = print) -> dict:
    """Resolve ``model.source``, load it safely and save it as the pipeline's dense model."""
    with tempfile.TemporaryDirectory(prefix="medprune-load-") as work:
        src = resolve_model_source(cfg.model.source, work)
        progress(f"loading {src}")
        model, tokenizer = load_model(src, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)
        params = sum(p.numel() for p in model.parameters())
        info = {
            "source": cfg.model.source,
            "model_type": model.config.model_type,
            "architecture": type(model).__name__,
            "params": params,
            "dtype": cfg.model.dtype,
        }
        _save(model, tokenizer, out_dir, cfg, {"source": info})
    progress(f"loaded {info['architecture']} with {params:,} parameters")
    return info


def stage_prune(cfg: RunConfig, model_dir: str | Path, out_dir: str | Path, *, progress: Progress = print) -> dict:
    """Prune the dense model per ``cfg.prune`` and save the pruned model."""
    model, tokenizer = load_model(model_dir, dtype=cfg.model.dtype)
    t0 = time.perf_counter()
    texts = None
    if cfg.prune.calibration.data:
        texts = load_calibration_texts(cfg.prune.calibration.data)
    result = prune_model(model, tokenizer, cfg.prune, calib_texts=texts, progress=progress)
    model, report = result.model, result.report
    report["seconds"] = time.perf_counter() - t0
    lineage = _lineage(model_dir)
    lineage["prune"] = report
    _save(model, tokenizer, out_dir, cfg, lineage)
    progress(f"pruned with {cfg.prune.method}: sparsity {report['sparsity']:.4f} over {len(report['layers'])} layers")
    return report


def recover_checkpoint_dir(cfg: RunConfig, out_dir: str | Path) -> Path:
    """Where recovery checkpoints go: ``recover.checkpoint_dir`` (gs:// read as /gcs/...),
    else a folder beside the output model, which a retried task finds again."""
    from medprune.recover.checkpoint import durable_dir

    if cfg.recover.checkpoint_dir:
        return Path(durable_dir(cfg.recover.checkpoint_dir))
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.checkpoints"


def _is_structured(method_name: str) -> bool:
    """Structured methods (width, depth) make the model smaller; it then trains normally."""
    from medprune.prune.methods import get_method

    try:
        return getattr(get_method(method_name), "kind", "mask") in ("width", "depth")
    except MedpruneError:
        return False


def _remove_checkpoints(ckpt_dir: Path) -> None:
    from medprune.recover.checkpoint import list_checkpoints

    for _, path in list_checkpoints(ckpt_dir):
        shutil.rmtree(path, ignore_errors=True)
    try:
        ckpt_dir.rmdir()  # only if nothing else is in it
    except OSError:
        pass


def stage_recover(
    cfg: RunConfig,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    teacher_dir: str | Path | None = None,
    progress: Progress = print,
) -> dict:
    """Fine-tune the pruned model to win back accuracy; pruned weights stay zero.

    With ``teacher_dir`` (the dense model) and ``recover.distill.enabled`` the loss is
    distillation. Runs the same under ``accelerate launch`` on many GPUs: every process calls
    this, the main process writes ``out_dir``. Checkpoints go to
    :func:`recover_checkpoint_dir`, and a rerun resumes from the newest one.
    """
    from medprune.recover.data import load_examples, split_eval
    from medprune.recover.train import recover_model, resolve_mixed_precision

    rc = cfg.recover
    if not rc.enabled or rc.steps == 0:
        progress("recovery disabled: passing the pruned model through")
        shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
        return {"enabled": False}
    if not rc.data:
        raise MedpruneError("recover.data: set a JSONL of {text} or {prompt, response} to fine-tune on, or recover.enabled: false")
    done = _lineage(out_dir).get("recover")
    if done and done.get("complete") and (Path(out_dir) / "config.json").is_file():
        progress(f"recovery already finished in {out_dir} (a retried task): keeping it")
        return done
    model, tokenizer = load_model(model_dir, dtype="float32")  # float32 master weights
    train = load_examples(tokenizer, rc.data, rc.seq_len, rc.data_format)
    eval_examples = None
    if rc.eval_data:
        eval_examples = load_examples(tokenizer, rc.eval_data, rc.seq_len, rc.data_format)
    elif rc.eval_fraction > 0:
        train, eval_examples = split_eval(train, rc.eval_fraction, cfg.seed)
    teacher = None
    if teacher_dir is not None and rc.distill.enabled:
        teacher_dtype = "float32" if resolve_mixed_precision(rc.mixed_precision) == "no" else "bfloat16"
        teacher, _ = load_model(teacher_dir, dtype=teacher_dtype)
    before = sparsity_report(model, cfg.prune.exclude)
    ckpt_dir = recover_checkpoint_dir(cfg, out_dir)
    structured = _is_structured(cfg.prune.method)
    result = recover_model(
        model,
        tokenizer,
        train,
        rc,
        teacher=teacher,
        eval_examples=eval_examples,
        exclude=cfg.prune.exclude,
        nm=cfg.prune.nm,
        seed=cfg.seed,
        checkpoint_dir=ckpt_dir,
        reference_dir=model_dir,
        keep_masks=not structured,
        progress=progress,
    )
    report = result.report
    if not result.is_main_process:
        return report
    model = result.model
    if result.state_dict is not None:  # FSDP: a plain model holding the gathered full weights
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(result.model.config)
        model.load_state_dict(result.state_dict)
    after = sparsity_report(model, cfg.prune.exclude)
    report.update(enabled=True, sparsity_before=before["sparsity"], sparsity_after=after["sparsity"], checkpoint_dir=str(ckpt_dir))
    model.to(dtype=DTYPES[cfg.model.dtype])  # trained in float32, saved in the run's dtype
    lineage = _lineage(model_dir)
    lineage["recover"] = report
    _save(model, tokenizer, out_dir, cfg, lineage)
    _remove_checkpoints(ckpt_dir)  # the run is complete: its checkpoints are spent
    progress(
        f"recovered in {report['steps']} steps: loss {report['losses'][0]:.4f} -> {report['final_loss']:.4f}, "
        f"sparsity {before['sparsity']:.4f} -> {after['sparsity']:.4f}"
    )
    return report


def stage_evaluate(cfg: RunConfig, model_dir: str | Path, out_dir: str | Path, *, label: str, progress: Progress = print) -> dict:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return evaluate_model(model_dir, cfg.evaluate, out_dir, label=label, dtype=cfg.model.dtype, progress=progress)


def _read_results(eval_dir: str | Path) -> dict:
    return read_results(eval_dir)


def stage_gate(cfg: RunConfig, baseline_dir: str | Path, candidate_dir: str | Path, out_dir: str | Path) -> GateDecision:
    """Decide on promotion from both evaluation directories (results and per-item
    predictions); write ``gate.json`` into ``out_dir``."""
    decision = decide(
        read_results(baseline_dir),
        read_results(candidate_dir),
        cfg.gate,
        baseline_predictions=read_predictions(baseline_dir),
        candidate_predictions=read_predictions(candidate_dir),
    )
    atomic_write_json(Path(out_dir) / GATE_FILE, decision.to_dict())
    return decision


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
    run_info = {"run": run_id or cfg.run_name, "model": cfg.model.name, "source": cfg.model.source,
                "method": cfg.prune.method, "sparsity": cfg.prune.sparsity, "pattern": cfg.prune.pattern}
    paths = render_report(
        out_dir,
        gate=gate,
        baseline=read_results(baseline_dir),
        candidate=read_results(candidate_dir),
        baseline_predictions=read_predictions(baseline_dir),
        candidate_predictions=candidate_predictions,
        critical_ids=cfg.gate.critical_items,
        run_info=run_info,
    )
    labels, matrix = confusion_matrix(candidate_predictions or [])
    progress(f"report: {paths['html']}")
    return {"html": str(paths["html"]), "md": str(paths["md"]), "confusion": {"labels": labels, "matrix": matrix}}


def build_summary(
    cfg: RunConfig,
    *,
    run_id: str,
    model_dir: str | Path,
    gate_dir: str | Path,
    baseline_dir: str | Path,
    candidate_dir: str | Path,
    registered: dict | None,
) -> dict:
    gate = json.loads((Path(gate_dir) / GATE_FILE).read_text())
    lineage = _lineage(model_dir)
    prune = lineage.get("prune", {})
    baseline, candidate = _read_results(baseline_dir), _read_results(candidate_dir)
    return {
        "run_id": run_id,
        "run_name": cfg.run_name,
        "model": cfg.model.name,
        "source": cfg.model.source,
        "gate": gate,
        "registered": registered,
        "sparsity": prune.get("sparsity"),
        "prune": {k: v for k, v in prune.items() if k != "layers"},
        "recover": {k: v for k, v in lineage.get("recover", {}).items() if k != "losses"},
        "metrics": {"baseline": flat_metrics(baseline, "baseline"), "candidate": flat_metrics(candidate, "candidate")},
        "evaluation": {"baseline": baseline, "candidate": candidate},
    }


def stage_register(
    cfg: RunConfig,
    *,
    run_id: str,
    model_dir: str | Path,
    gate_dir: str | Path,
    baseline_dir: str | Path,
    candidate_dir: str | Path,
    summary_dir: str | Path,
    progress: Progress = print,
) -> dict:
    """Register the candidate if (and only if) the gate passed; write ``summary.json``."""
    gate = GateDecision.from_dict(json.loads((Path(gate_dir) / GATE_FILE).read_text()))
    if not gate.passed:
        raise MedpruneError("refusing to register: the gate did not pass: " + "; ".join(gate.reasons))
    summary = build_summary(cfg, run_id=run_id, model_dir=model_dir, gate_dir=gate_dir, baseline_dir=baseline_dir, candidate_dir=candidate_dir, registered=None)
    metadata = {k: summary[k] for k in ("run_id", "source", "gate", "sparsity", "prune", "recover", "metrics")}
    metadata["config"] = json.loads(cfg.to_json())
    if cfg.registry.target == "vertex":
        from medprune.register.vertex import register_vertex

        metrics = {**summary["metrics"]["baseline"], **summary["metrics"]["candidate"]}
        registered = register_vertex(
            model_dir, cfg=cfg, metadata={"run_id": run_id, "metrics": metrics}, gate_passed=gate.passed
        )
        # model / version / path: the keys the local registry reports, so summaries read alike
        summary["registered"] = {
            "target": "vertex", "model": cfg.model.name, "version": registered["version_id"],
            "path": registered["uri"], **registered,
        }
        atomic_write_json(Path(summary_dir) / SUMMARY_FILE, summary)
        progress(f"registered {registered['versioned_name']} (aliases {registered['aliases']})")
        return summary
    registry = LocalRegistry(cfg.registry.local.root)
    version = registry.register(cfg.model.name, model_dir, metadata, aliases=cfg.registry.aliases)
    summary["registered"] = version.to_dict()
    atomic_write_json(Path(summary_dir) / SUMMARY_FILE, summary)
    progress(f"registered {version.model} version {version.version} at {version.path} (aliases {version.aliases})")
    return summary


def stage_not_promoted(
    cfg: RunConfig,
    *,
    run_id: str,
    model_dir: str | Path,
    gate_dir: str | Path,
    baseline_dir: str | Path,
    candidate_dir: str | Path,
    summary_dir: str | Path,
    progress: Progress = print,
) -> dict:
    """Record that the gate failed and nothing was promoted, with the reasons."""
    summary = build_summary(cfg, run_id=run_id, model_dir=model_dir, gate_dir=gate_dir, baseline_dir=baseline_dir, candidate_dir=candidate_dir, registered=None)
    atomic_write_json(Path(summary_dir) / SUMMARY_FILE, summary)
    progress("gate FAILED, nothing promoted: " + "; ".join(summary["gate"]["reasons"]))
    return summary
