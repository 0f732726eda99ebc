"""kfp v2 lightweight components: one per pipeline stage, each a thin wrapper over
:mod:`medprune.<stage>.stage`. Component bodies import medprune at run time, from the base image."""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Input, Markdown, Metrics, Model, Output

from medprune.components.artifact_types import VertexModel

# Only the decorators' placeholder: the pipeline sets every task's image at compile time
# (medprune.vertex.template.component_image refuses to compile for Vertex AI without a
# medprune image). kfp.local's SubprocessRunner runs the components in this Python.
BASE_IMAGE = "python:3.11-slim"


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def resolve_inputs_component(config_json: str) -> NamedTuple(
    "ResolvedInputs", model_source=str, model_fingerprint=str, data_sha256=str
):
    """Pin model.source to the version it names now and digest every data file (never
    cached): the tasks that read them take these as inputs, so their cache keys change when
    the alias moves or the data change."""
    from collections import namedtuple

    from medprune.config import RunConfig
    from medprune.load.fingerprint import resolve_inputs

    resolved = resolve_inputs(RunConfig.from_json(config_json))
    print(
        f"model {resolved.model_source} ({resolved.model_fingerprint}); data {resolved.data_sha256}"
    )
    out = namedtuple("ResolvedInputs", ["model_source", "model_fingerprint", "data_sha256"])
    return out(resolved.model_source, resolved.model_fingerprint, resolved.data_json())


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def load_component(
    config_json: str,
    model: Output[Model],
    metrics: Output[Metrics],
    model_source: str = "",
    model_fingerprint: str = "",
):
    """Load the dense model (``model_source``: model.source pinned to a version by the
    resolve task; empty: model.source) and save it as safetensors. ``model_fingerprint``
    is in the cache key only."""
    from medprune.config import RunConfig
    from medprune.load.stage import stage_load

    info = stage_load(RunConfig.from_json(config_json), model.path, source=model_source or None)
    if model_fingerprint:
        model.metadata["source_fingerprint"] = model_fingerprint
    model.metadata.update({k: v for k, v in info.items() if isinstance(v, (str, int, float))})
    metrics.log_metric("params", info["params"])


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prune_component(
    config_json: str,
    dense_model: Input[Model],
    pruned_model: Output[Model],
    metrics: Output[Metrics],
    data_sha256: str = "",
) -> float:
    """Prune the dense model; returns the achieved sparsity. ``data_sha256`` (digests of the
    data files, from the resolve task) is in the cache key only."""
    from medprune.config import RunConfig
    from medprune.prune.stage import stage_prune

    report = stage_prune(RunConfig.from_json(config_json), dense_model.path, pruned_model.path)
    for key in ("sparsity", "total_params", "nonzero_params", "seconds"):
        metrics.log_metric(key, report[key])
    pruned_model.metadata.update(method=report["method"], sparsity=report["sparsity"])
    return float(report["sparsity"])


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def recover_component(
    config_json: str,
    pruned_model: Input[Model],
    teacher_model: Input[Model],
    recovered_model: Output[Model],
    metrics: Output[Metrics],
    data_sha256: str = "",
):
    """Fine-tune the pruned model with its sparsity kept, distilling from the dense teacher.
    ``data_sha256`` is in the cache key only."""
    from medprune.config import RunConfig
    from medprune.recover.stage import stage_recover

    report = stage_recover(
        RunConfig.from_json(config_json),
        pruned_model.path,
        recovered_model.path,
        teacher_dir=teacher_model.path,
    )
    for key, value in report.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def recover_custom_job_component(
    config_json: str,
    worker_pools_json: str,
    run_on: str,
    pruned_model: Input[Model],
    teacher_model: Input[Model],
    recovered_model: Output[Model],
    metrics: Output[Metrics],
    data_sha256: str = "",
):
    """Run recovery as a Vertex AI custom job with its own worker pools (``run_on``
    "vertex", fixed at compile time; in process for "local"). No run-specific value is an
    input, so the task caches like the others."""
    from medprune.recover.custom_job import run_recover_step

    report = run_recover_step(
        config_json,
        worker_pools_json,
        run_on,
        model_dir=pruned_model.path,
        teacher_dir=teacher_model.path,
        out_dir=recovered_model.path,
    )
    for key, value in report.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_component(
    config_json: str,
    label: str,
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    data_sha256: str = "",
):
    """Evaluate one model (baseline or candidate) on the clinical data. ``data_sha256`` is
    in the cache key only."""
    from medprune.config import RunConfig
    from medprune.evaluate.runner import flat_metrics
    from medprune.evaluate.stage import stage_evaluate

    results = stage_evaluate(
        RunConfig.from_json(config_json), model.path, evaluation.path, label=label
    )
    for key, value in flat_metrics(results, label).items():
        metrics.log_metric(key, value)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate_component(
    config_json: str,
    baseline: Input[Artifact],
    candidate: Input[Artifact],
    decision: Output[Artifact],
    metrics: Output[Metrics],
    report_html: Output[HTML],
    report_md: Output[Markdown],
    confusion: Output[ClassificationMetrics],
) -> bool:
    """Decide whether the candidate may be promoted and render the report; returns passed."""
    import shutil
    import tempfile

    from medprune.config import RunConfig
    from medprune.gate.stage import gate_task_metrics, stage_gate
    from medprune.report.stage import stage_report

    cfg = RunConfig.from_json(config_json)
    result = stage_gate(cfg, baseline.path, candidate.path, decision.path)
    for key, value in gate_task_metrics(result, baseline.path, candidate.path).items():
        metrics.log_metric(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        report = stage_report(
            cfg,
            gate_dir=decision.path,
            baseline_dir=baseline.path,
            candidate_dir=candidate.path,
            out_dir=tmp,
        )
        shutil.copyfile(report["html"], report_html.path)
        shutil.copyfile(report["md"], report_md.path)
    if report["confusion"]["labels"]:
        confusion.log_confusion_matrix(report["confusion"]["labels"], report["confusion"]["matrix"])
    decision.metadata.update(passed=result.passed, reasons="; ".join(result.reasons))
    return result.passed


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_component(
    config_json: str,
    run_id: str,
    model: Input[Model],
    decision: Input[Artifact],
    baseline: Input[Artifact],
    candidate: Input[Artifact],
    summary: Output[Artifact],
):
    """Register the candidate in the configured registry (the gate passed)."""
    from medprune.config import RunConfig
    from medprune.register.stage import RunArtifacts, stage_register

    result = stage_register(
        RunConfig.from_json(config_json),
        RunArtifacts(
            run_id, model.path, decision.path, baseline.path, candidate.path, summary.path
        ),
    )
    summary.metadata.update({"registered_version": result["registered"]["version"], "passed": True})


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_vertex_component(
    config_json: str,
    run_id: str,
    model: Input[Model],
    decision: Input[Artifact],
    baseline: Input[Artifact],
    candidate: Input[Artifact],
    summary: Output[Artifact],
    vertex_model: Output[VertexModel],
    job_resource_name: str = "",
    pipeline_root: str = "",
):
    """Register the candidate in the Vertex AI Model Registry (the gate passed)."""
    import os

    from medprune.config import RunConfig
    from medprune.register.stage import RunArtifacts, stage_register
    from medprune.vertex.client import environment_from_run

    # Project, region and bucket not in the config come from this run (kfp placeholders).
    for key, value in environment_from_run(job_resource_name, pipeline_root).items():
        os.environ.setdefault(key, value)

    result = stage_register(
        RunConfig.from_json(config_json),
        RunArtifacts(
            run_id, model.path, decision.path, baseline.path, candidate.path, summary.path
        ),
    )
    registered = result["registered"]
    vertex_model.uri = registered["uri"]
    vertex_model.metadata.update(registered["vertex_model_metadata"])
    summary.metadata.update(
        {
            "registered_version": registered["version"],
            "passed": True,
            "resource_name": registered["versioned_name"],
        }
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def not_promoted_component(
    config_json: str,
    run_id: str,
    model: Input[Model],
    decision: Input[Artifact],
    baseline: Input[Artifact],
    candidate: Input[Artifact],
    summary: Output[Artifact],
):
    """Record that the gate failed: nothing is promoted, and why."""
    from medprune.config import RunConfig
    from medprune.register.stage import RunArtifacts, stage_not_promoted

    result = stage_not_promoted(
        RunConfig.from_json(config_json),
        RunArtifacts(
            run_id, model.path, decision.path, baseline.path, candidate.path, summary.path
        ),
    )
    summary.metadata.update({"passed": False, "reasons": "; ".join(result["gate"]["reasons"])})
