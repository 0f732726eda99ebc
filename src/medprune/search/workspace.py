"""The search's workspace: everything a task writes lives under it
(``search.cache_dir``, default ``OUTPUT_DIR/search-cache``). ``runs/RUN_ID/`` holds the split,
``state.json``, ``summary.json`` and ``report.html`` (rewritten after every step, so a rung's
results can be read while the search runs); ``items/`` the search and certification items and
each rung's slice; the rest is the candidate cache (:mod:`medprune.search.candidate`), with the
dense model, its evaluations and its calibration statistics made once by the setup task.
"""

from __future__ import annotations

import json
from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.metrics import metric_values
from medprune.evaluate.runner import evaluation_settings
from medprune.evaluate.stage import stage_evaluate
from medprune.io.atomic import atomic_write_json
from medprune.io.fuse import gcs_fuse_path
from medprune.load.model import load_model
from medprune.load.stage import stage_load
from medprune.progress import Progress
from medprune.prune import collect_dense_calibration, load_calibration_texts
from medprune.search.candidate import (
    cached,
    content_hash,
    rung_eval_config,
    uses_dense_statistics,
    with_sections,
)
from medprune.search.remote import localize_data
from medprune.search.space import Chain, step_config
from medprune.search.split import Split, write_items
from medprune.search.state import SEARCH_SUMMARY, STATE_FILE, SearchState, Workspace
from medprune.search.summary import search_summary

__all__ = [
    "SEARCH_SUMMARY",
    "STATE_FILE",
    "dense_statistics",
    "eval_brief",
    "evaluate_into",
    "load_state",
    "make_workspace",
    "run_dir",
    "save",
    "workspace_root",
]


def workspace_root(cfg: RunConfig) -> Path:
    sc = cfg.search
    assert sc is not None
    return Path(gcs_fuse_path(sc.cache_dir or str(Path(cfg.output_dir) / "search-cache")))


def run_dir(cfg: RunConfig, run_id: str) -> Path:
    return workspace_root(cfg) / "runs" / run_id


def make_workspace(
    cfg: RunConfig,
    source: RunConfig,
    run_id: str,
    split: Split,
    raw: list[dict],
    cert_raw: list[dict],
    chains: list[Chain],
    progress: Progress,
) -> Workspace:
    """The items (search, certification, each rung's slice), the dense model, its calibration
    statistics and its evaluations on both sets (all cached); returns the workspace's paths.
    ``cfg`` is ``source`` (the configured paths, which the workspace records) with its data
    made local."""
    sc = cfg.search
    assert sc is not None
    root = workspace_root(cfg)
    rdir = run_dir(cfg, run_id)
    rdir.mkdir(parents=True, exist_ok=True)
    items = root / "items" / content_hash([split.search_ids, split.certification_ids])
    search_file = write_items(items / "search.jsonl", raw, split.search_ids)
    cert_file = write_items(items / "certification.jsonl", cert_raw, split.certification_ids)
    slices = []
    for i, rung in enumerate(sc.rungs):
        ids = split.search_ids if rung.items is None else split.search_ids[: rung.items]
        slices.append(str(write_items(items / f"rung{i}-{len(ids)}.jsonl", raw, ids)))

    dense_key = content_hash([cfg.model.source, cfg.model.dtype, cfg.model.trust_remote_code])
    dense_entry = root / f"dense-{dense_key}"
    cached(dense_entry, lambda tmp: stage_load(cfg, tmp / "model", progress=progress), progress)
    dense = dense_entry / "model"
    dense_stats = dense_statistics(cfg, chains, root, dense_key, dense, progress)

    def baseline(label: str, ev: dict) -> str:
        ecfg = localize_data(with_sections(cfg, evaluate=ev))
        entry = (
            root
            / f"baseline-{dense_key}-{content_hash(evaluation_settings(ecfg.evaluate, cfg.model.dtype))}"
        )
        cached(
            entry,
            lambda tmp: {
                "label": label,
                **evaluate_into(ecfg, dense, tmp, label, progress),
            },
            progress,
        )
        return str(entry)

    search_eval = baseline("dense (search set)", rung_eval_config(cfg, str(search_file), 0))
    cert_ev = json.loads(source.evaluate.model_dump_json())
    cert_ev.update(mcq=str(cert_file), max_items=None)
    cert_eval = baseline("dense (certification set)", cert_ev)
    kl_texts = source.prune.calibration.data or source.evaluate.perplexity
    return Workspace(
        root=str(root),
        run_dir=str(rdir),
        cache_dir=str(root / "candidates"),
        dense_model=str(dense),
        search_items=str(search_file),
        certification_items=str(cert_file),
        slices=slices,
        baseline_search_eval=search_eval,
        baseline_certification_eval=cert_eval,
        certification_eval=cert_ev,
        kl_texts=kl_texts,
        dense_calibration=dense_stats,
        run_id=run_id,
    )


def dense_statistics(
    cfg: RunConfig,
    chains: list[Chain],
    root: Path,
    dense_key: str,
    dense: Path,
    progress: Progress,
) -> str | None:
    """The dense model's calibration statistics, collected once per search (one pass over
    the dense layers) and cached under the model and the calibration settings; every
    candidate whose first pruning step can use them reads them instead of making its own
    dense pass (:mod:`medprune.prune.dense`). None when no candidate can use them."""
    cal = cfg.prune.calibration
    data = cal.data
    if not data or not any(
        uses_dense_statistics(step_config(cfg, cand.steps[0]))
        for chain in chains
        for cand in chain.candidates
    ):
        return None
    # The dense statistics do not depend on how many passes pruning makes.
    settings = json.loads(cal.model_dump_json(exclude={"passes"}))
    entry = root / f"dense-calibration-{dense_key}-{content_hash(settings)}"

    def collect(tmp: Path) -> dict:
        model, tokenizer = load_model(dense, dtype=cfg.model.dtype)
        stats = collect_dense_calibration(
            model, tokenizer, cfg.prune, load_calibration_texts(data), progress=progress
        )
        stats.save(tmp / "statistics")
        return {"calibration": stats.calibration, "model": stats.model}

    cached(entry, collect, progress)
    return str(entry / "statistics")


def evaluate_into(ecfg: RunConfig, model_dir, tmp: Path, label: str, progress: Progress) -> dict:
    """Evaluate ``model_dir`` with ``ecfg`` into the cache entry ``tmp``; its metadata."""
    stage_evaluate(ecfg, model_dir, tmp, label=label, progress=progress)
    return {"model_dir": str(model_dir)}


def eval_brief(results: dict) -> dict:
    return {k: v for k, v in metric_values(results).items() if not k.startswith("accuracy_")}


def save(state: SearchState, *, summary: dict | None = None) -> None:
    """Write state.json, summary.json (while running: the candidates so far) and report.html."""
    from medprune.search.report import render_search_report  # matplotlib: only when saving

    ws = state.ws
    state.save(ws.state_file)
    summary = summary or search_summary(state)
    atomic_write_json(ws.summary_file, summary)
    render_search_report(summary, Path(ws.run_dir))


def load_state(cfg: RunConfig, run_id: str) -> SearchState:
    return SearchState.load(run_dir(cfg, run_id) / STATE_FILE)
