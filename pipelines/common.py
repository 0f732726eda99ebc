"""What every medprune pipeline does the same way when it is compiled for Vertex AI:

- one component image for every task, the image ``containers/`` builds (refusing a bare
  Python image): :func:`pipeline_image`;
- the settings that shape the graph recorded in the pipeline's description, so
  ``submit --template`` and ``schedule`` can refuse a config that would compile to another
  graph: :func:`pipeline_description`;
- cache keys that include what a task really reads: :func:`resolve_inputs_task` pins the
  model version and digests the data (never cached) for the tasks that read them;
- tasks with side effects never cached: :func:`never_cache`.

    image = pipeline_image(cfg, local)
    @dsl.pipeline(name="...", description=pipeline_description("...", cfg, image))
    def p(config_json: str = cfg.to_json()):
        inputs = resolve_inputs_task(config_json, cfg, image)
        ...
"""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.
from kfp import dsl

from medprune.components.stage_components import resolve_inputs_component
from medprune.config import ResourceConfig, RunConfig
from medprune.vertex.template import GRAPH_SETTINGS, component_image, describe

#: kfp.local runs components in this Python; the image is not used there.
LOCAL_IMAGE = "medprune-local"


def pipeline_image(cfg: RunConfig, local: bool) -> str:
    """The image of every task: :func:`medprune.vertex.template.component_image` for Vertex
    AI (ConfigError when the config names none, or a bare Python image); for kfp.local the
    same if the config names one, else a placeholder (the local runner ignores it)."""
    if not local:
        return component_image(cfg)
    try:
        return component_image(cfg)
    except Exception:  # no image configured: irrelevant for kfp.local
        return LOCAL_IMAGE


def pipeline_description(summary: str, cfg: RunConfig, image: str, kind: str = "medprune") -> str:
    """``summary`` plus the graph settings of ``cfg`` for pipeline ``kind`` (registered in
    :data:`medprune.vertex.template.GRAPH_SETTINGS`), which submit/schedule check."""
    return describe(summary, GRAPH_SETTINGS[kind](cfg, image), kind)


def configure(
    task: dsl.PipelineTask, cfg: RunConfig, image: str, stage: str, display_name: str
) -> dsl.PipelineTask:
    """Image, resources and display name of one task (resources are used by Vertex and
    ignored by the local runner)."""
    res: ResourceConfig = cfg.pipeline.resources[stage]
    task.set_container_image(image)
    task.set_display_name(display_name)
    task.set_cpu_limit(res.cpu)
    task.set_memory_limit(res.memory)
    if res.accelerator_type:
        task.set_accelerator_type(res.accelerator_type)
        task.set_accelerator_limit(res.accelerator_count)
    return task


def never_cache(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """A task with side effects (registering, recording a decision) or whose result depends
    on the moment it runs: Vertex AI must run it every time, whatever the run's caching."""
    task.set_caching_options(False)
    return task


def resolve_inputs_task(config_json, cfg: RunConfig, image: str) -> dsl.PipelineTask:
    """The first task: ``model_source`` (pinned), ``model_fingerprint`` and ``data_sha256``
    outputs to pass to the tasks that read the model and the data. Never cached."""
    task = resolve_inputs_component(config_json=config_json)
    configure(task, cfg, image, "load", "resolve-inputs")
    task.set_cpu_limit("1")
    task.set_memory_limit("2G")
    return never_cache(task)
