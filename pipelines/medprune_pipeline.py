"""The medprune pipeline: load -> prune -> recover -> evaluate (baseline, candidate) -> gate
-> register if the gate passed, else record why nothing was promoted."""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.
import json

from kfp import dsl

from medprune.components.stage_components import (
    evaluate_component,
    gate_component,
    load_component,
    not_promoted_component,
    prune_component,
    recover_component,
    recover_custom_job_component,
    register_component,
    register_vertex_component,
)
from medprune.config import ResourceConfig, RunConfig

PIPELINE_NAME = "medprune"


def _configure(task: dsl.PipelineTask, cfg: RunConfig, stage: str, display_name: str) -> dsl.PipelineTask:
    """Image, resources and display name of one task (resources are used by Vertex and
    ignored by the local runner)."""
    res: ResourceConfig = cfg.pipeline.resources[stage]
    task.set_container_image(cfg.pipeline.base_image)
    task.set_display_name(display_name)
    task.set_cpu_limit(res.cpu)
    task.set_memory_limit(res.memory)
    if res.accelerator_type:
        task.set_accelerator_type(res.accelerator_type)
        task.set_accelerator_limit(res.accelerator_count)
    return task


def _pipeline_job_resource_name(local: bool):
    """Vertex fills this placeholder with projects/P/locations/L/pipelineJobs/ID, which tells
    the recover launcher where to submit its custom job. kfp.local cannot resolve it, so a
    pipeline built for the local runner passes "local" (the launcher then runs in process)."""
    return "local" if local else dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER


def _recover_task(cfg: RunConfig, config_json, pruned_model, teacher_model, local: bool) -> dsl.PipelineTask:
    """The recover step: in the pipeline's own task, or (``recover.custom_job.enabled``) a
    small launcher task that runs it as a Vertex custom job with the configured worker pools."""
    if not cfg.recover.custom_job.enabled:
        task = recover_component(config_json=config_json, pruned_model=pruned_model, teacher_model=teacher_model)
        return _configure(task, cfg, "recover", "recover-finetune")
    from medprune.recover.custom_job import worker_pool_template

    pools = worker_pool_template(cfg.recover.custom_job, cfg.pipeline.base_image)
    task = recover_custom_job_component(
        config_json=config_json,
        worker_pools_json=json.dumps(pools),
        pipeline_job_resource_name=_pipeline_job_resource_name(local),
        pruned_model=pruned_model,
        teacher_model=teacher_model,
    )
    # The launcher only waits; the GPUs belong to the custom job.
    task.set_container_image(cfg.pipeline.base_image)
    task.set_display_name("recover-finetune-custom-job")
    task.set_cpu_limit("1")
    task.set_memory_limit("4G")
    return task


def build_pipeline(cfg: RunConfig, *, local: bool = False):
    """Return the pipeline function for ``cfg``. The config travels as the ``config_json``
    pipeline parameter (its default is ``cfg``), so a compiled template can be re-run with
    another config without recompiling. ``local`` builds it for kfp.local, which cannot
    resolve Vertex-only placeholders."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Prune, recover, evaluate and gate a clinical LLM.")
    def medprune_pipeline(config_json: str = cfg.to_json()):
        load = _configure(load_component(config_json=config_json), cfg, "load", "load")
        prune = _configure(
            prune_component(config_json=config_json, dense_model=load.outputs["model"]), cfg, "prune", "prune"
        )
        recover = _recover_task(cfg, config_json, prune.outputs["pruned_model"], load.outputs["model"], local)
        baseline = _configure(
            evaluate_component(config_json=config_json, label="baseline", model=load.outputs["model"]),
            cfg,
            "evaluate",
            "evaluate-baseline",
        )
        candidate = _configure(
            evaluate_component(config_json=config_json, label="candidate", model=recover.outputs["recovered_model"]),
            cfg,
            "evaluate",
            "evaluate-candidate",
        )
        gate = _configure(
            gate_component(
                config_json=config_json,
                baseline=baseline.outputs["evaluation"],
                candidate=candidate.outputs["evaluation"],
            ),
            cfg,
            "gate",
            "gate",
        )
        common = dict(
            config_json=config_json,
            run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            model=recover.outputs["recovered_model"],
            decision=gate.outputs["decision"],
            baseline=baseline.outputs["evaluation"],
            candidate=candidate.outputs["evaluation"],
        )
        # The vertex target also outputs a google.VertexModel artifact for the console.
        with dsl.If(gate.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            if cfg.registry.target == "vertex":
                # The pipeline root names the bucket at run time (kfp.local has no
                # placeholder for the job's resource name, so the project and region come
                # from the config resolved at submit time, or CLOUD_ML_* on Vertex AI).
                register = register_vertex_component(**common, pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER)
            else:
                register = register_component(**common)
            _configure(register, cfg, "register", "register")
        with dsl.Else(name="gate-failed"):
            _configure(not_promoted_component(**common), cfg, "gate", "not-promoted")

    return medprune_pipeline
