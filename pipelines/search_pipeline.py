"""The search pipeline: setup -> (rung-0 rounds, then one step per rung: the batch's
candidates in parallel with dsl.ParallelFor, collected into an advance task that keeps the
survivors) -> certification -> dsl.If certified -> register, else record why not.

The number of steps is fixed from the config at compile time (bisection rounds + rungs);
a step with nothing left to run loops over one no-op item."""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.
from pathlib import Path

from kfp import dsl

from medprune.components.search_components import (
    search_advance_component,
    search_batch_component,
    search_candidate_component,
    search_certify_component,
    search_not_certified_component,
    search_register_component,
    search_setup_component,
)
from medprune.config import ResourceConfig, RunConfig
from medprune.pipelines.common import pipeline_description, pipeline_image
from medprune.runner import compile_spec, run_pipeline_local
from medprune.search.space import bisect_rounds, build_space, search_graph_settings
from medprune.vertex.template import register_graph_settings

PIPELINE_NAME = "medprune-search"
SUMMARY = "Find the most compressed clinical LLM that provably passes the gate."


def _configure(
    task: dsl.PipelineTask, image: str, res: ResourceConfig, display_name: str
) -> dsl.PipelineTask:
    task.set_container_image(image)
    task.set_display_name(display_name)
    task.set_cpu_limit(res.cpu)
    task.set_memory_limit(res.memory)
    if res.accelerator_type:
        task.set_accelerator_type(res.accelerator_type)
        task.set_accelerator_limit(res.accelerator_count)
    task.set_caching_options(False)  # the search caches its own work under search.cache_dir
    return task


def search_steps(cfg: RunConfig) -> int:
    assert cfg.search is not None
    return bisect_rounds(build_space(cfg), cfg.search.bisect) + len(cfg.search.rungs) - 1


def build_search_pipeline(cfg: RunConfig, *, local: bool = False):
    """The search pipeline for ``cfg`` (which must have a ``search`` section). ``run_id``
    names the run's folder in the workspace: on Vertex the pipeline job's name."""
    if cfg.search is None:
        raise ValueError("the config has no search section")
    sc = cfg.search
    small = cfg.pipeline.resources["gate"]
    heavy = cfg.pipeline.resources["evaluate"]
    n_steps = search_steps(cfg)
    run_id_default = "" if not local else "local"
    image = pipeline_image(cfg, local)
    register_search_graph_settings()

    @dsl.pipeline(
        name=PIPELINE_NAME, description=pipeline_description(SUMMARY, cfg, image, kind="search")
    )
    def search_pipeline(config_json: str = cfg.to_json(), run_id: str = run_id_default):
        rid = run_id if local else dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        state = _configure(
            search_setup_component(config_json=config_json, run_id=rid),
            image,
            heavy,
            "search-setup",
        ).output
        for i in range(n_steps):
            batch = _configure(
                search_batch_component(state=state), image, small, f"batch-step-{i}"
            ).output
            with dsl.ParallelFor(items=batch, parallelism=sc.parallelism, name=f"step-{i}") as task:
                cand = _configure(
                    search_candidate_component(config_json=config_json, task=task),
                    image,
                    sc.candidate_resources,
                    f"candidate-step-{i}",
                )
            adv = _configure(
                search_advance_component(
                    config_json=config_json, state=state, results=dsl.Collected(cand.output)
                ),
                image,
                small,
                f"advance-step-{i}",
            )
            state = adv.output
        certify = _configure(
            search_certify_component(config_json=config_json, state=state), image, heavy, "certify"
        )
        # the register tasks read the certified state from the run's folder (certify saved it)
        with dsl.If(certify.outputs["Output"] == True, name="certified"):  # noqa: E712
            _configure(
                search_register_component(config_json=config_json, run_id=rid),
                image,
                cfg.pipeline.resources["register"],
                "register",
            )
        with dsl.Else(name="not-certified"):
            _configure(
                search_not_certified_component(config_json=config_json, run_id=rid),
                image,
                small,
                "not-certified",
            )

    return search_pipeline


def register_search_graph_settings() -> None:
    """Make search templates known to :func:`medprune.vertex.template.check_template_matches`
    (called before a search pipeline is built or a template is checked)."""
    register_graph_settings("search", search_graph_settings)


def compile_search_pipeline(cfg: RunConfig, output) -> Path:
    """Write the Vertex-ready search pipeline spec for ``cfg`` to ``output``, atomically."""
    return compile_spec(build_search_pipeline(cfg), output)


def run_search_local(cfg: RunConfig, run_id: str) -> Path:
    """Run the search pipeline with kfp.local (one candidate at a time; :mod:`medprune.runner`:
    ``run.log``, ``FAILED`` when it fails), after every check that can fail before pruning;
    copy its summary and report to OUTPUT_DIR/RUN_ID and return the summary's path."""
    import shutil

    from medprune.search.checks import preflight_search
    from medprune.search.workspace import SEARCH_SUMMARY, run_dir

    preflight_search(cfg)
    run = run_pipeline_local(
        lambda: build_search_pipeline(cfg, local=True)(config_json=cfg.to_json(), run_id=run_id),
        Path(cfg.output_dir) / run_id,
        run_id,
        what="search run",
    )
    work = run_dir(cfg, run_id)
    for name in (SEARCH_SUMMARY, "report.html"):
        if (work / name).is_file():
            shutil.copyfile(work / name, run.run_dir / name)
    return run.run_dir / SEARCH_SUMMARY
