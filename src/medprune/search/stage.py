"""The search's stage functions, one per pipeline task: ``setup`` (checks, split, dense
model, its evaluations and its calibration statistics shared by every candidate, first
batch), ``step`` (one candidate task), ``advance``
(record a batch's results, choose the next), ``certify`` (fixed-sequence testing on the
certification set) and ``finish`` (register the certified candidate, or record why
nothing was). What they write lives under the workspace (:mod:`medprune.search.workspace`).
"""

from __future__ import annotations

import json
from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.runner import read_results
from medprune.io.atomic import atomic_write_json
from medprune.progress import Progress
from medprune.register.stage import RunArtifacts, stage_register
from medprune.search import plan as planner
from medprune.search.candidate import run_candidate, with_sections
from medprune.search.certification import certify_candidates
from medprune.search.checks import SearchError, preflight_search, split_items
from medprune.search.remote import localize_data
from medprune.search.space import step_config
from medprune.search.state import SEARCH_SUMMARY, SearchState, Workspace
from medprune.search.summary import search_summary
from medprune.search.workspace import eval_brief, make_workspace, save


def setup(
    cfg: RunConfig, run_id: str, *, progress: Progress = print
) -> tuple[SearchState, list[dict]]:
    """Check, split, load the dense model and evaluate it on both sets (all cached); return
    the initial state and the first batch."""
    source, cfg = cfg, localize_data(cfg)  # the workspace records the configured paths
    found = preflight_search(cfg)
    chains, split = found["chains"], found["split"]
    _, raw, cert_raw = split_items(cfg)
    workspace = make_workspace(cfg, source, run_id, split, raw, cert_raw, chains, progress)
    state = planner.initial_state(
        cfg,
        chains,
        workspace=workspace,
        split=split.to_dict(),
        baseline={
            "search": eval_brief(read_results(workspace.baseline_search_eval)),
            "certification": eval_brief(read_results(workspace.baseline_certification_eval)),
        },
    )
    state.sample_size = dict(
        found["sample_size"].to_dict(), observed=False, message=found["sample_size"].message()
    )
    state.independence = [r.to_dict() for r in found["independence"]]
    batch = planner.explore_batch(cfg, state)
    save(state)
    progress(
        f"search: {sum(len(c.candidates) for c in chains)} candidates in {len(chains)} chains; "
        f"{len(split.search_ids)} search items, {len(split.certification_ids)} certification items; "
        f"first batch {[t['label'] for t in batch]}"
    )
    return state, batch


def step(cfg: RunConfig, workspace: Workspace, task: dict, *, progress: Progress = print) -> dict:
    """One candidate task of a batch (see :func:`medprune.search.candidate.run_candidate`)."""
    return run_candidate(cfg, task, workspace, progress=progress)


def advance(
    cfg: RunConfig, state: SearchState, results: list[dict], *, progress: Progress = print
) -> list[dict]:
    """Record a batch's results and save the state; return the next batch."""
    batch = planner.advance(state, cfg, results)
    save(state)
    real = [t for t in batch if t.get("kind") != "noop"]
    progress(
        f"search step {state.step}: {state.phase}"
        + (f" rung {state.rung}" if state.phase == "rung" else "")
        + f"; next: {[t['label'] for t in real] or 'nothing'}"
    )
    if state.error:
        progress(f"search stopped: {state.error}")
    return batch


def certify(cfg: RunConfig, state: SearchState, *, progress: Progress = print) -> dict:
    """Fixed-sequence certification of the final rung's candidates
    (:func:`medprune.search.certification.certify_candidates`); records the answer in
    ``state.certification``, saves the state and returns the answer."""
    answer = certify_candidates(cfg, state, progress=progress)
    save(state)
    return answer


def finish(
    cfg: RunConfig,
    state: SearchState,
    summary_dir: str | Path,
    *,
    register: bool,
    progress: Progress = print,
) -> dict:
    """Register the certified candidate (``register``) through the register stage, or record
    why nothing was; write the search summary into ``summary_dir`` and the run directory."""
    cert = state.certification or {}
    registered = None
    run_summary = None
    if register:
        cid = cert.get("certified")
        if not cid:
            raise SearchError("nothing was certified, so nothing can be registered")
        cand = state.candidates[cid]
        ws = state.ws
        cand_cert = cand.certification or {}
        steps = cand.steps
        reg_cfg = with_sections(
            cfg, prune=json.loads(step_config(cfg, steps[-1]).model_dump_json())
        )
        tmp = Path(ws.run_dir) / "register"
        tmp.mkdir(parents=True, exist_ok=True)
        run_summary = stage_register(
            reg_cfg,
            RunArtifacts(
                ws.run_id,
                cand.results[state.last_rung]["model_dir"],
                cand_cert["gate_dir"],
                ws.baseline_certification_eval,
                cand_cert["eval_dir"],
                tmp,
            ),
            progress=progress,
        )
        registered = run_summary["registered"]
    state.registered = registered
    summary = search_summary(state)
    if run_summary is not None:
        summary["certified_run"] = {k: v for k, v in run_summary.items() if k != "evaluation"}
    Path(summary_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(summary_dir) / SEARCH_SUMMARY, summary)
    save(state, summary=summary)
    return summary


def run_search(cfg: RunConfig, run_id: str, *, progress: Progress = print) -> dict:
    """The whole search in this process, the same tasks in the same order as the compiled
    pipeline (which runs them as kfp tasks, each rung's candidates in parallel)."""
    state, batch = setup(cfg, run_id, progress=progress)
    for _ in range(planner.total_steps(state)):
        results = [step(cfg, state.ws, task, progress=progress) for task in batch]
        batch = advance(cfg, state, results, progress=progress)
    cert = certify(cfg, state, progress=progress)
    return finish(
        cfg,
        state,
        Path(state.ws.run_dir),
        register=bool(cert.get("certified")),
        progress=progress,
    )


__all__ = [
    "SearchError",
    "advance",
    "certify",
    "finish",
    "run_search",
    "setup",
    "step",
]
