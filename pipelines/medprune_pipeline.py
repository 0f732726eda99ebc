"""The medprune pipeline: resolve inputs -> load -> prune -> recover -> evaluate (baseline,
candidate) -> gate -> register if the gate passed, else record why nothing was promoted."""

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
from medprune.config import RunConfig
from medprune.pipelines.common import (
    configure,
    never_cache,
    pipeline_description,
    pipeline_image,
    resolve_inputs_task,
)

PIPELINE_NAME = "medprune"
SUMMARY = "Prune, recover, evaluate and gate a clinical LLM."


def _pipeline_job_resource_name(local: bool):
    """Vertex fills this placeholder with projects/P/locations/L/pipelineJobs/ID, which tells
    the register task (never cached) its project and region. kfp.local cannot resolve it, so
    a pipeline built for the local runner passes "local" (register then uses the config).
    Cached tasks never take it: it differs in every run."""
    return "local" if local else dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER


def _recover_task(
    cfg: RunConfig, image: str, config_json, pruned_model, teacher_model, data_sha256, local: bool
) -> dsl.PipelineTask:
    """The recover step: in the pipeline's own task, or (``recover.custom_job.enabled``) a
    small launcher task that runs it as a Vertex custom job with the configured worker pools."""
    if not cfg.recover.custom_job.enabled:
        task = recover_component(
            config_json=config_json,
            pruned_model=pruned_model,
            teacher_model=teacher_model,
            data_sha256=data_sha256,
        )
        return configure(task, cfg, image, "recover", "recover-finetune")
    from medprune.recover.custom_job import RUN_LOCAL, RUN_ON_VERTEX, worker_pool_template

    pools = worker_pool_template(cfg.recover.custom_job, image)
    task = recover_custom_job_component(
        config_json=config_json,
        worker_pools_json=json.dumps(pools),
        # a compile-time constant: the run's resource name would change the cache key
        # every run (its project and region come from config_json instead)
        run_on=RUN_LOCAL if local else RUN_ON_VERTEX,
        pruned_model=pruned_model,
        teacher_model=teacher_model,
        data_sha256=data_sha256,
    )
    # The launcher only waits; the GPUs belong to the custom job.
    task.set_container_image(image)
    task.set_display_name("recover-finetune-custom-job")
    task.set_cpu_limit("1")
    task.set_memory_limit("4G")
    return task


def build_pipeline(cfg: RunConfig, *, local: bool = False):
    """Return the pipeline function for ``cfg``. The config travels as the ``config_json``
    pipeline parameter (its default is ``cfg``); the settings that shape the graph (registry
    target, custom job, image, resources) are recorded in the description, and medprune
    refuses to run the template with a config that differs in them. ``local`` builds it for
    kfp.local, which cannot resolve Vertex-only placeholders."""
    image = pipeline_image(cfg, local)

    @dsl.pipeline(name=PIPELINE_NAME, description=pipeline_description(SUMMARY, cfg, image))
    def medprune_pipeline(config_json: str = cfg.to_json()):
        inputs = resolve_inputs_task(config_json, cfg, image)
        data_sha256 = inputs.outputs["data_sha256"]
        load = configure(
            load_component(
                config_json=config_json,
                model_source=inputs.outputs["model_source"],
                model_fingerprint=inputs.outputs["model_fingerprint"],
            ),
            cfg,
            image,
            "load",
            "load",
        )
        prune = configure(
            prune_component(
                config_json=config_json, dense_model=load.outputs["model"], data_sha256=data_sha256
            ),
            cfg,
            image,
            "prune",
            "prune",
        )
        recover = _recover_task(
            cfg,
            image,
            config_json,
            prune.outputs["pruned_model"],
            load.outputs["model"],
            data_sha256,
            local,
        )
        baseline = configure(
            evaluate_component(
                config_json=config_json,
                label="baseline",
                model=load.outputs["model"],
                data_sha256=data_sha256,
            ),
            cfg,
            image,
            "evaluate",
            "evaluate-baseline",
        )
        candidate = configure(
            evaluate_component(
                config_json=config_json,
                label="candidate",
                model=recover.outputs["recovered_model"],
                data_sha256=data_sha256,
            ),
            cfg,
            image,
            "evaluate",
            "evaluate-candidate",
        )
        gate = configure(
            gate_component(
                config_json=config_json,
                baseline=baseline.outputs["evaluation"],
                candidate=candidate.outputs["evaluation"],
            ),
            cfg,
            image,
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
        # Registering (a new version each time) and recording the decision are never cached.
        with dsl.If(gate.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            if cfg.registry.target == "vertex":
                # Project and region come from this run's resource name and the bucket from
                # its pipeline root (kfp placeholders), not from environment variables.
                register = register_vertex_component(
                    **common,
                    job_resource_name=_pipeline_job_resource_name(local),
                    pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
                )
            else:
                register = register_component(**common)
            never_cache(configure(register, cfg, image, "register", "register"))
        with dsl.Else(name="gate-failed"):
            never_cache(
                configure(not_promoted_component(**common), cfg, image, "gate", "not-promoted")
            )

    return medprune_pipeline
