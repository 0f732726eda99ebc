"""The medprune pipeline: load -> prune -> recover -> evaluate (baseline, candidate) -> gate
-> register if the gate passed, else record why nothing was promoted."""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.
from kfp import dsl

from medprune.components.stages import (
    evaluate_component,
    gate_component,
    load_component,
    not_promoted_component,
    prune_component,
    recover_component,
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


def build_pipeline(cfg: RunConfig):
    """Return the pipeline function for ``cfg``. The config travels as the ``config_json``
    pipeline parameter (its default is ``cfg``), so a compiled template can be re-run with
    another config without recompiling."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Prune, recover, evaluate and gate a clinical LLM.")
    def medprune_pipeline(config_json: str = cfg.to_json()):
        load = _configure(load_component(config_json=config_json), cfg, "load", "load")
        prune = _configure(
            prune_component(config_json=config_json, dense_model=load.outputs["model"]), cfg, "prune", "prune"
        )
        recover = _configure(
            recover_component(config_json=config_json, pruned_model=prune.outputs["pruned_model"]),
            cfg,
            "recover",
            "recover-finetune",
        )
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
