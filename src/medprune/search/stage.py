"""The search's stage functions, one per pipeline task: ``setup`` (checks, split, dense
model, its evaluations and its calibration statistics shared by every candidate, first
batch), ``step`` (one candidate task), ``advance``
(record a batch's results, choose the next), ``certify`` (fixed-sequence testing on the
certification set) and ``finish`` (register the certified candidate, or record why
nothing was). Everything a task writes lives under the workspace
(``search.cache_dir``, default ``OUTPUT_DIR/search-cache``): ``runs/RUN_ID/`` holds the
split, ``state.json``, ``summary.json`` and ``report.html`` (rewritten after every step, so
a rung's results can be read while the search runs); the rest is the candidate cache.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import ConfigError, DataError, MedpruneError
from medprune.io.atomic import atomic_write_json
from medprune.progress import Progress
from medprune.search import plan as planner
from medprune.search.candidate import _cached, _hash, _with, cache_entry, rung_eval_config
from medprune.search.remote import check_workspace_reachable, localize_data
from medprune.search.space import build_space, step_config
from medprune.search.split import read_split_records, stratified_split, write_items

SEARCH_SUMMARY = "summary.json"
STATE_FILE = "state.json"


class SearchError(MedpruneError):
    """The search cannot run as configured (checked before any pruning)."""


def workspace_root(cfg: RunConfig) -> Path:
    from medprune.recover.checkpoint import durable_dir

    sc = cfg.search
    assert sc is not None
    return Path(durable_dir(sc.cache_dir or str(Path(cfg.output_dir) / "search-cache")))


def run_dir(cfg: RunConfig, run_id: str) -> Path:
    return workspace_root(cfg) / "runs" / run_id


def _split(cfg: RunConfig):
    """Search and certification items: the split of evaluate.mcq, or all of it against a
    separate certification file."""
    sc = cfg.search
    assert sc is not None
    if not cfg.evaluate.mcq:
        raise ConfigError(
            "search needs evaluate.mcq: candidates are ranked and certified on multiple-choice items"
        )
    ev = cfg.evaluate
    assert ev.mcq is not None
    records, raw = read_split_records(ev.mcq, fmt=ev.mcq_format, cop_base=ev.medmcqa_cop_base)
    if sc.certification.file:
        cert_records, cert_raw = read_split_records(
            sc.certification.file, fmt=ev.mcq_format, cop_base=ev.medmcqa_cop_base
        )
        overlap = sorted({r.id for r in records} & {r.id for r in cert_records})
        if overlap:
            raise DataError(
                f"search.certification.file {sc.certification.file} shares item ids with evaluate.mcq "
                f"{ev.mcq}: {overlap[:5]}; certification items must be ones the search never sees"
            )
        from medprune.search.split import Split, _order_key

        search_ids = sorted(
            (r.id for r in records), key=lambda i: _order_key(sc.certification.seed + 1, i)
        )
        split = Split(
            search_ids, [r.id for r in cert_records], {}, 0.0, sc.certification.seed, [], []
        )
        return split, raw, cert_raw
    split = stratified_split(
        records,
        fraction=sc.certification.fraction,
        stratify_by=sc.certification.stratify_by,
        seed=sc.certification.seed,
        rare_strata=sc.certification.rare_strata,
        origin=str(ev.mcq),
    )
    return split, raw, raw


def _check_candidates_fit_model(cfg: RunConfig, chains) -> None:
    """Each candidate's prune settings against the model's shapes (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from medprune.errors import PruneError
    from medprune.prune.engine import check_prune_settings
    from medprune.prune.methods import get_method

    if "://" in cfg.model.source:
        return  # remote models are checked when the setup task has them
    mc = AutoConfig.from_pretrained(cfg.model.source, trust_remote_code=cfg.model.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(mc)
    for chain in chains:
        for cand in chain.candidates:
            pc = step_config(
                cfg, cand.steps[0]
            )  # later steps act on the smaller model: checked when run
            try:
                check_prune_settings(model, pc, get_method(pc.method))
            except PruneError as exc:
                raise ConfigError(
                    f"search.axes: candidate {cand.label!r} cannot be made from this model: {exc}"
                ) from None


def check_search_for_vertex(cfg: RunConfig) -> None:
    """On Vertex AI the search's tasks share their work through Cloud Storage."""
    sc = cfg.search
    if sc is None:
        raise ConfigError("the config has no search section")
    if not (sc.cache_dir or "").startswith(("gs://", "/gcs/")):
        raise ConfigError(
            f"search.cache_dir={sc.cache_dir!r}: on Vertex AI the search's tasks share candidates, state and "
            "report through Cloud Storage; set it to gs://BUCKET/PATH"
        )


def preflight_search(cfg: RunConfig) -> dict:
    """Every check that can fail before any pruning: the space, each value against the
    model, the split, rung sizes, recovery text against certification items, and whether
    the certification set can detect the margin at all. Returns what was found."""
    from medprune.gate.stats import noninferiority_sample_size
    from medprune.pipeline_runner import preflight

    sc = cfg.search
    if sc is None:
        raise ConfigError(
            "this config has no search section; `medprune search` needs one (see examples/search.yaml)"
        )
    check_workspace_reachable(cfg)
    cfg = localize_data(cfg)  # gs:// data: through the FUSE mount, else downloaded
    preflight(cfg)
    chains = build_space(cfg)
    _check_candidates_fit_model(cfg, chains)
    split, _, _ = _split(cfg)
    n_search, n_cert = len(split.search_ids), len(split.certification_ids)
    if n_cert == 0:
        field = (
            "search.certification.file"
            if sc.certification.file
            else "search.certification.fraction"
        )
        raise SearchError(
            f"{field}: no items are left to certify on after the split of {cfg.evaluate.mcq}; "
            "give more items or a larger fraction"
        )
    for i, rung in enumerate(sc.rungs):
        if rung.items is not None and rung.items > n_search:
            raise ConfigError(
                f"search.rungs[{i}].items={rung.items} but the search set has {n_search} items; "
                f"allowed: <= {n_search} (or null for all of them)"
            )
    ni = cfg.gate.non_inferiority
    assert ni is not None  # RunConfig requires gate.non_inferiority with a search section
    size = noninferiority_sample_size(
        ni.margin,
        sc.alpha,
        sc.power,
        sc.certification.assumed_discordance,
        available=n_cert,
    )
    if not size.enough:
        raise SearchError(
            f"the certification set is too small for the margin: {size.message()}. Lower search.power, raise "
            "gate.non_inferiority.margin or search.certification.fraction, or give more items"
        )
    if n_cert < cfg.gate.non_inferiority.min_items:  # type: ignore[union-attr]
        raise SearchError(
            f"the certification set has {n_cert} items, fewer than gate.non_inferiority.min_items="
            f"{cfg.gate.non_inferiority.min_items}"  # type: ignore[union-attr]
        )
    if (
        cfg.recover.enabled
        and cfg.recover.data
        and "://" not in cfg.recover.data
        and any(r.recover_steps for r in sc.rungs)
    ):
        import tempfile

        from medprune.data.clinical import check_leakage
        from medprune.io.atomic import atomic_write_text

        _, _, cert_raw = _split(cfg)
        by_id = {str(r["id"]): r for r in cert_raw}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "certification.jsonl"
            atomic_write_text(
                path, "".join(json.dumps(by_id[i]) + "\n" for i in split.certification_ids)
            )
            try:
                leaked = check_leakage(path, cfg.recover.data)
            except MedpruneError:
                leaked = []  # not our item format: the leakage check reads medprune-format items only
        if leaked:
            raise SearchError(
                f"recover.data {cfg.recover.data} contains text from {len(leaked)} certification item(s) "
                f"({leaked[:5]}): recovery must not train on what certifies it; remove those texts"
            )
    independence = check_certification_independence(cfg)
    return {"chains": chains, "split": split, "sample_size": size, "independence": independence}


def check_certification_independence(cfg: RunConfig) -> list:
    """Every certification source against the recovery and calibration text (data cards,
    concept and 8-word overlap); a search whose sources are all dependent cannot certify
    anything, so it stops here, before any model work. Returns the verdicts."""
    from medprune.gate.sources import check_declared_sources, independence_report

    errors = check_declared_sources(cfg)
    if errors:
        raise DataError("; ".join(errors))
    report = independence_report(cfg)
    if report and not any(r.independent for r in report):
        raise SearchError(
            "no certification source is independent of the recovery / calibration text, so no "
            "certificate would say anything about what the model knew outside it: "
            + "; ".join(r.message() for r in report)
            + ". Add an independent evaluate.mcq_sources entry (e.g. the wordnet-medical set "
            "build-data writes) or recover on other text"
        )
    return report


def setup(cfg: RunConfig, run_id: str, *, progress: Progress = print) -> tuple[dict, list[dict]]:
    """Check, split, load the dense model and evaluate it on both sets (all cached); return
    the initial state and the first batch."""
    from medprune.evaluate.stage import stage_evaluate
    from medprune.load.stage import stage_load

    source, cfg = cfg, localize_data(cfg)  # the workspace records the configured paths
    found = preflight_search(cfg)
    chains, split = found["chains"], found["split"]
    _, raw, cert_raw = _split(cfg)
    sc = cfg.search
    assert sc is not None
    root = workspace_root(cfg)
    rdir = run_dir(cfg, run_id)
    rdir.mkdir(parents=True, exist_ok=True)
    items = root / "items" / _hash([split.search_ids, split.certification_ids])
    search_file = write_items(items / "search.jsonl", raw, split.search_ids)
    cert_file = write_items(items / "certification.jsonl", cert_raw, split.certification_ids)
    slices = []
    for i, rung in enumerate(sc.rungs):
        ids = split.search_ids if rung.items is None else split.search_ids[: rung.items]
        slices.append(str(write_items(items / f"rung{i}-{len(ids)}.jsonl", raw, ids)))

    dense_key = _hash([cfg.model.source, cfg.model.dtype, cfg.model.trust_remote_code])
    dense_entry = root / f"dense-{dense_key}"
    _cached(dense_entry, lambda tmp: stage_load(cfg, tmp / "model", progress=progress), progress)
    dense = dense_entry / "model"
    dense_stats = _dense_statistics(cfg, chains, root, dense_key, dense, progress)

    def baseline(label: str, ev: dict) -> str:
        ecfg = localize_data(_with(cfg, evaluate=ev))
        from medprune.evaluate.runner import evaluation_settings

        entry = (
            root
            / f"baseline-{dense_key}-{_hash(evaluation_settings(ecfg.evaluate, cfg.model.dtype))}"
        )
        _cached(
            entry,
            lambda tmp: {
                "label": label,
                **_evaluate(stage_evaluate, ecfg, dense, tmp, label, progress),
            },
            progress,
        )
        return str(entry)

    search_eval = baseline("dense (search set)", rung_eval_config(cfg, str(search_file), 0))
    cert_ev = json.loads(source.evaluate.model_dump_json())
    cert_ev.update(mcq=str(cert_file), max_items=None)
    cert_eval = baseline("dense (certification set)", cert_ev)
    kl_texts = source.prune.calibration.data or source.evaluate.perplexity
    workspace = {
        "root": str(root),
        "run_dir": str(rdir),
        "cache_dir": str(root / "candidates"),
        "dense_model": str(dense),
        "search_items": str(search_file),
        "certification_items": str(cert_file),
        "slices": slices,
        "baseline_search_eval": search_eval,
        "baseline_certification_eval": cert_eval,
        "certification_eval": cert_ev,
        "kl_texts": kl_texts,
        "dense_calibration": dense_stats,
        "run_id": run_id,
    }
    from medprune.evaluate.runner import read_results

    base_cert = read_results(cert_eval)
    state = planner.initial_state(
        cfg,
        chains,
        workspace=workspace,
        split=split.to_dict(),
        baseline={
            "search": _eval_brief(read_results(search_eval)),
            "certification": _eval_brief(base_cert),
        },
    )
    state["sample_size"] = dict(
        found["sample_size"].to_dict(), observed=False, message=found["sample_size"].message()
    )
    state["independence"] = [r.to_dict() for r in found["independence"]]
    batch = planner._explore_batch(cfg, state)
    save(cfg, state)
    progress(
        f"search: {sum(len(c.candidates) for c in chains)} candidates in {len(chains)} chains; "
        f"{len(split.search_ids)} search items, {len(split.certification_ids)} certification items; "
        f"first batch {[t['label'] for t in batch]}"
    )
    return state, batch


def _dense_statistics(
    cfg: RunConfig, chains, root: Path, dense_key: str, dense: Path, progress: Progress
) -> str | None:
    """The dense model's calibration statistics, collected once per search (one pass over
    the dense layers) and cached under the model and the calibration settings; every
    candidate whose first pruning step can use them reads them instead of making its own
    dense pass (:mod:`medprune.prune.dense`). None when no candidate can use them."""
    from medprune.search.candidate import uses_dense_statistics

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
    entry = root / f"dense-calibration-{dense_key}-{_hash(settings)}"

    def collect(tmp: Path) -> dict:
        from medprune.load.model import load_model
        from medprune.prune import collect_dense_calibration, load_calibration_texts

        model, tokenizer = load_model(dense, dtype=cfg.model.dtype)
        stats = collect_dense_calibration(
            model, tokenizer, cfg.prune, load_calibration_texts(data), progress=progress
        )
        stats.save(tmp / "statistics")
        return {"calibration": stats.calibration, "model": stats.model}

    _cached(entry, collect, progress)
    return str(entry / "statistics")


def _evaluate(
    stage_evaluate, ecfg: RunConfig, model_dir, tmp: Path, label: str, progress: Progress
) -> dict:
    stage_evaluate(ecfg, model_dir, tmp, label=label, progress=progress)
    return {"model_dir": str(model_dir)}


def _eval_brief(results: dict) -> dict:
    from medprune.evaluate.metrics import metric_values

    return {k: v for k, v in metric_values(results).items() if not k.startswith("accuracy_")}


def step(cfg: RunConfig, workspace: dict, task: dict, *, progress: Progress = print) -> dict:
    """One candidate task of a batch (see :func:`medprune.search.candidate.run_candidate`)."""
    from medprune.search.candidate import run_candidate

    return run_candidate(cfg, task, workspace, progress=progress)


def advance(
    cfg: RunConfig, state: dict, results: list[dict], *, progress: Progress = print
) -> list[dict]:
    batch = planner.advance(state, cfg, results)
    save(cfg, state)
    real = [t for t in batch if t.get("kind") != "noop"]
    progress(
        f"search step {state['step']}: {state['phase']}"
        + (f" rung {state.get('rung')}" if state["phase"] == "rung" else "")
        + f"; next: {[t['label'] for t in real] or 'nothing'}"
    )
    if state["error"]:
        progress(f"search stopped: {state['error']}")
    return batch


def certify(cfg: RunConfig, state: dict, *, progress: Progress = print) -> dict:
    """Fixed-sequence certification of the final rung's candidates; records the answer in
    ``state['certification']`` and returns it."""
    from medprune.evaluate.stage import stage_evaluate
    from medprune.search.certify import (
        certify_sequence,
        gate_on_certification,
        smallest_per_source,
    )

    search = cfg.search
    assert search is not None  # only a config with a search section runs a search
    ws = state["workspace"]
    if state["error"]:
        state["certification"] = {
            "order": [],
            "certified": None,
            "decisions": {},
            "why": state["error"],
        }
        save(cfg, state)
        return state["certification"]
    order = planner.certification_order(state, cfg)
    last = str(state["n_rungs"] - 1)
    ecfg = localize_data(_with(cfg, evaluate=ws["certification_eval"]))
    from medprune.evaluate.runner import evaluation_settings

    eval_hash = _hash(evaluation_settings(ecfg.evaluate, cfg.model.dtype))
    gate_root = Path(ws["run_dir"]) / "certification"

    def test(cid: str):
        cand = state["candidates"][cid]
        model_dir = Path(cand["results"][last]["model_dir"])
        entry = Path(ws["cache_dir"]) / cid / f"certeval-{model_dir.parent.name}-{eval_hash}"
        _cached(
            entry,
            lambda tmp: _evaluate(
                stage_evaluate, ecfg, model_dir, tmp, f"{cand['label']} (certification)", progress
            ),
            progress,
        )
        decision = gate_on_certification(
            cfg,
            ws["baseline_certification_eval"],
            entry,
            gate_root / cid,
            state.get("independence"),  # made by setup on the downloaded files
        )
        cand["certification"] = {
            "passed": decision.passed,
            "reasons": decision.reasons,
            "interval": decision.interval,
            "sources": [v.to_dict() for v in decision.sources],
            "holm": decision.holm,
            "warnings": decision.warnings,
            "eval_dir": str(entry),
            "gate_dir": str(gate_root / cid),
        }
        progress(
            f"certification of {cand['label']}: {'PASSED' if decision.passed else 'FAILED'}"
            + ("" if decision.passed else ": " + "; ".join(decision.reasons))
        )
        return decision

    index, decisions = certify_sequence(order, test)
    per_source: dict[str, dict] = {}
    if index < 0 and order:
        # nothing passed everywhere: test the rest of the order too, to name what each
        # source alone could certify (reported only; it certifies nothing)
        for cid in order:
            if cid not in decisions:
                decisions[cid] = test(cid)
        for source, best in smallest_per_source(order, decisions, search.alpha).items():
            per_source[source] = {
                "smallest": best,
                "label": None if best is None else state["candidates"][best]["label"],
            }
            progress(
                f"certification on {source} alone: "
                + (
                    f"{state['candidates'][best]['label']} (the most compressed it certifies)"
                    if best
                    else "not even the least compressed candidate"
                )
            )
    sequence = order[: index + 2] if index + 1 < len(order) else order  # what the sequence tested
    for i, cid in enumerate(order):
        cand = state["candidates"][cid]
        if cid not in decisions or cid not in sequence:
            cand["stopped"] = (
                "not tested: an earlier candidate in the certification sequence failed"
                + (" (evaluated only for the per-source report)" if cid in decisions else "")
            )
        elif not decisions[cid].passed:
            cand["stopped"] = "failed certification: " + "; ".join(decisions[cid].reasons)
        elif i < index:
            cand["stopped"] = "certified, but a more compressed candidate was certified after it"
    certified = order[index] if index >= 0 else None
    why = (
        None
        if certified
        else (
            "no candidate reached certification"
            if not order
            else f"no candidate passed on every source: {state['candidates'][order[0]]['label']} "
            "(first in the sequence) failed certification: "
            + "; ".join(decisions[order[0]].reasons)
        )
    )
    state["certification"] = {
        "order": order,
        "certified": certified,
        "why": why,
        "alpha": search.alpha,
        "method": search.certification.method,
        "sources": {cid: [v.to_dict() for v in d.sources] for cid, d in decisions.items()},
        "smallest_per_source": per_source,
        "independence": state.get("independence", []),
    }
    if certified:
        state["candidates"][certified]["stopped"] = (
            "CERTIFIED: the most compressed candidate that passed the gate on the certification set"
        )
        state["candidates"][certified]["status"] = "certified"
    save(cfg, state)
    return state["certification"]


def finish(
    cfg: RunConfig,
    state: dict,
    summary_dir: str | Path,
    *,
    register: bool,
    progress: Progress = print,
) -> dict:
    """Register the certified candidate (``register``) through the register stage, or record
    why nothing was; write the search summary into ``summary_dir`` and the run directory."""
    from medprune.register.stage import RunArtifacts, stage_register

    cert = state.get("certification") or {}
    registered = None
    run_summary = None
    if register:
        cid = cert.get("certified")
        if not cid:
            raise SearchError("nothing was certified, so nothing can be registered")
        cand = state["candidates"][cid]
        last = str(state["n_rungs"] - 1)
        steps = cand["steps"]
        reg_cfg = _with(cfg, prune=json.loads(step_config(cfg, steps[-1]).model_dump_json()))
        tmp = Path(state["workspace"]["run_dir"]) / "register"
        tmp.mkdir(parents=True, exist_ok=True)
        run_summary = stage_register(
            reg_cfg,
            RunArtifacts(
                state["workspace"]["run_id"],
                cand["results"][last]["model_dir"],
                cand["certification"]["gate_dir"],
                state["workspace"]["baseline_certification_eval"],
                cand["certification"]["eval_dir"],
                tmp,
            ),
            progress=progress,
        )
        registered = run_summary["registered"]
    state["registered"] = registered
    summary = search_summary(state)
    if run_summary is not None:
        summary["certified_run"] = {k: v for k, v in run_summary.items() if k != "evaluation"}
    Path(summary_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(summary_dir) / SEARCH_SUMMARY, summary)
    save(cfg, state, summary=summary)
    return summary


def search_summary(state: dict) -> dict:
    """Every candidate with its metrics and why it stopped; the split; the certification."""
    cands = []
    for c in state["candidates"].values():
        row = {
            k: c.get(k)
            for k in (
                "id",
                "label",
                "chain",
                "index",
                "steps",
                "status",
                "stopped",
                "objective_value",
                "certification",
                "cut_short",
            )
        }
        row["results"] = {
            r: {k: v for k, v in res.items() if k not in ("traceback",)}
            for r, res in c["results"].items()
        }
        cands.append(row)
    cert = state.get("certification") or {}
    certified = cert.get("certified")
    best = state["candidates"].get(certified) if certified else None
    cpu = state["budget"]["cpu_seconds"]
    return {
        "kind": "search",
        "run_id": state["workspace"].get("run_id"),
        "objective": state["objective"],
        "margin": state["margin"],
        "error": state["error"],
        "certified": None
        if best is None
        else {
            "id": best["id"],
            "label": best["label"],
            "objective_value": best.get("objective_value"),
            "certification": best.get("certification"),
            "search": best["results"].get(str(state["n_rungs"] - 1)),
        },
        "registered": state.get("registered"),
        "certification": cert,
        "split": {
            k: v for k, v in state["split"].items() if k not in ("search_ids", "certification_ids")
        },
        "split_ids": {
            "search": state["split"]["search_ids"],
            "certification": state["split"]["certification_ids"],
        },
        "sample_size": state["sample_size"],
        "independence": state.get("independence", []),
        "baseline": state["baseline"],
        "rung_counts": state["rung_counts"],
        "budget": state["budget"],
        "cpu_minutes": cpu / 60,
        "chains": [
            {k: ch[k] for k in ("name", "lo", "hi", "done", "why")} for ch in state["chains"]
        ],
        "candidates": sorted(cands, key=lambda r: (r["chain"], r["index"])),
    }


def save(cfg: RunConfig, state: dict, *, summary: dict | None = None) -> None:
    """Write state.json, summary.json (while running: the candidates so far) and report.html."""
    from medprune.search.report import render_search_report

    rdir = Path(state["workspace"]["run_dir"])
    atomic_write_json(rdir / STATE_FILE, state)
    summary = summary or search_summary(state)
    atomic_write_json(rdir / SEARCH_SUMMARY, summary)
    render_search_report(summary, rdir)


def run_search(cfg: RunConfig, run_id: str, *, progress: Progress = print) -> dict:
    """The whole search in this process, the same tasks in the same order as the compiled
    pipeline (which runs them as kfp tasks, each rung's candidates in parallel)."""
    state, batch = setup(cfg, run_id, progress=progress)
    for _ in range(planner.total_steps(state)):
        results = [step(cfg, state["workspace"], task, progress=progress) for task in batch]
        batch = advance(cfg, state, results, progress=progress)
    cert = certify(cfg, state, progress=progress)
    return finish(
        cfg,
        state,
        Path(state["workspace"]["run_dir"]),
        register=bool(cert.get("certified")),
        progress=progress,
    )


def load_state(cfg: RunConfig, run_id: str) -> dict:
    return json.loads((run_dir(cfg, run_id) / STATE_FILE).read_text())


__all__ = [
    "SearchError",
    "advance",
    "cache_entry",
    "certify",
    "finish",
    "math",
    "preflight_search",
    "run_search",
    "setup",
    "step",
]
