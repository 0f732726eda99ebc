"""kfp v2 lightweight components of the search pipeline: thin wrappers over
:mod:`medprune.search.stage` (setup, one candidate, advance, certify, finish)."""

# No "from __future__ import annotations" here: kfp reads the real annotation objects.
from typing import List  # kfp reads typing.List annotations

from kfp import dsl
from kfp.dsl import HTML, Artifact, Output

BASE_IMAGE = "python:3.11-slim"


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_setup_component(config_json: str, run_id: str) -> str:
    """Check the search, split the items, load and evaluate the dense model; returns the
    state, which holds the first batch."""
    import json

    from medprune.config import RunConfig
    from medprune.search.stage import setup

    state, batch = setup(RunConfig.from_json(config_json), run_id)
    return json.dumps(dict(state.to_dict(), next_batch=batch))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_batch_component(state: str) -> List[str]:
    """The next batch of a state, as the list a dsl.ParallelFor loops over (each task
    carries the workspace's paths)."""
    import json

    st = json.loads(state)
    return [json.dumps(dict(t, workspace=st["workspace"])) for t in st["next_batch"]]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_candidate_component(config_json: str, task: str) -> str:
    """Prune (or reuse), recover for the rung, evaluate one candidate; returns its result."""
    import json

    from medprune.config import RunConfig
    from medprune.search.stage import step
    from medprune.search.state import Workspace

    item = json.loads(task)
    workspace = Workspace.model_validate(item.pop("workspace"))
    return json.dumps(step(RunConfig.from_json(config_json), workspace, item))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_advance_component(config_json: str, state: str, results: List[str]) -> str:
    """Record a batch's results (survivors, bisection); the new state holds the next batch."""
    import json

    from medprune.config import RunConfig
    from medprune.search.stage import advance
    from medprune.search.state import SearchState

    st = SearchState.from_json(state)  # the state without the batch it handed on
    batch = advance(RunConfig.from_json(config_json), st, [json.loads(r) for r in results])
    return json.dumps(dict(st.to_dict(), next_batch=batch))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_certify_component(config_json: str, state: str, report_html: Output[HTML]) -> bool:
    """Fixed-sequence certification on the certification set (the state, with its answer,
    is saved in the run's folder); the search report; returns whether one was certified."""
    import shutil
    from pathlib import Path

    from medprune.config import RunConfig
    from medprune.search.stage import certify
    from medprune.search.state import SearchState

    st = SearchState.from_json(state)
    cert = certify(RunConfig.from_json(config_json), st)
    shutil.copyfile(Path(st.ws.run_dir) / "report.html", report_html.path)
    return bool(cert.get("certified"))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_register_component(config_json: str, run_id: str, summary: Output[Artifact]):
    """Register the certified candidate (only it) and write the search summary."""
    from medprune.config import RunConfig
    from medprune.search.stage import finish
    from medprune.search.workspace import load_state

    cfg = RunConfig.from_json(config_json)
    result = finish(cfg, load_state(cfg, run_id), summary.path, register=True)
    summary.metadata.update(
        {
            "certified": result["certified"]["label"],
            "registered_version": str(result["registered"]["version"]),
        }
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def search_not_certified_component(config_json: str, run_id: str, summary: Output[Artifact]):
    """Record that nothing was certified, and why; write the search summary."""
    from medprune.config import RunConfig
    from medprune.search.stage import finish
    from medprune.search.workspace import load_state

    cfg = RunConfig.from_json(config_json)
    result = finish(cfg, load_state(cfg, run_id), summary.path, register=False)
    summary.metadata.update(
        {"certified": "", "why": str(result["error"] or result["certification"].get("why"))}
    )
