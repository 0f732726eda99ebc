"""The search's decisions, as pure functions of the search state (:mod:`medprune.search.state`): which candidates to run next,
which survive each rung, and in which order they are certified. No model is touched here,
so every decision is tested on made-up results.

The search runs in a fixed number of steps (so a pipeline can be compiled for it): first
``explore_rounds`` rounds of rung 0 (bisection along each chain, or the whole grid in one
round), then one step per further rung (successive halving). Each step is a batch of
candidate tasks that can run in parallel; :func:`advance` records their results and returns
the next batch.

Rung 0 judges a candidate pruned but not recovered, on a small slice of the search items
(and records its KL divergence to the dense model on calibration text). A candidate stays in
the race at rung ``r`` while ``accuracy - dense accuracy >= -(margin + rungs[r].tolerance)``
on that rung's items: the tolerance leaves room for what recovery at later rungs wins back.
"""

from __future__ import annotations

import math
import statistics

from medprune.config import RunConfig
from medprune.config.search import OBJECTIVES
from medprune.gate.stats import noninferiority_sample_size
from medprune.search.space import Chain, bisect_rounds, first_probe
from medprune.search.state import Budget, Candidate, ChainState, SearchState, Workspace

NOOP = {"kind": "noop"}


def initial_state(
    cfg: RunConfig,
    chains: list[Chain],
    *,
    workspace: Workspace | None,
    split: dict,
    baseline: dict,
) -> SearchState:
    sc = cfg.search
    assert sc is not None
    candidates = {
        c.id: Candidate.model_validate(c.to_dict()) for chain in chains for c in chain.candidates
    }
    return SearchState(
        phase="explore",
        explore_rounds=bisect_rounds(chains, sc.bisect),
        n_rungs=len(sc.rungs),
        margin=cfg.gate.non_inferiority.margin,  # type: ignore[union-attr]
        objective=sc.objective,
        workspace=workspace,
        split=split,
        baseline=baseline,
        chains=[
            ChainState(
                name=ch.name,
                ids=[c.id for c in ch.candidates],
                lo=-1,
                hi=len(ch.candidates),
                first_values=[c.first_value for c in ch.candidates],
                structured=ch.structured,
            )
            for ch in chains
        ],
        candidates=candidates,
        budget=Budget(candidates=sc.budget.candidates, cpu_minutes=sc.budget.cpu_minutes),
        rung_counts=[0] * len(sc.rungs),
    )


def total_steps(state: SearchState) -> int:
    return state.explore_rounds + state.n_rungs - 1


def _task(state: SearchState, cid: str, rung: int) -> dict:
    c = state.candidates[cid]
    return {
        "kind": "candidate",
        "id": cid,
        "rung": rung,
        "steps": c.steps,
        "label": c.label,
        "recover_caps": dict(c.recover_caps or {}),
    }


def _budget_left(state: SearchState) -> str | None:
    b = state.budget
    if b.candidates_used >= b.candidates:
        return f"budget: {b.candidates} candidates used"
    if b.cpu_minutes is not None and b.cpu_seconds >= 60 * b.cpu_minutes:
        return f"budget: {b.cpu_seconds / 60:.1f} of {b.cpu_minutes} CPU minutes used"
    return None


def cap_recovery(state: SearchState, cfg: RunConfig, ids: list[str], rung: int) -> None:
    """The CPU budget bounds the recovery of candidates already running too: each of the
    ``ids`` starting ``rung`` may recover for at most an equal share of the CPU minutes left
    (counted in process CPU time, as the budget is), or not at all once the budget is spent.
    A candidate so bounded gets ``recover_caps[rung]`` (minutes; 0: no recovery). One whose
    recovery the cap really cut (no recovery at all, or its time ran out before its steps)
    gets a ``cut_short`` line saying why and how far it got, also listed in
    ``budget.cut_short``; the evaluation that follows is not bounded."""
    sc = cfg.search
    assert sc is not None
    rc = sc.rungs[rung]
    b = state.budget
    if b.cpu_minutes is None or not ids or rc.recover_steps == 0 or not cfg.recover.enabled:
        return
    left = max(0.0, 60 * b.cpu_minutes - b.cpu_seconds) / 60
    share = math.floor(1000 * left / len(ids)) / 1000  # rounded down: never above what is left
    planned = rc.recover_minutes
    if planned is not None and share >= planned:
        return
    planned_text = f"{planned:g} minutes" if planned is not None else "no time limit"
    spent = f"{b.cpu_seconds / 60:.2f} of budget.cpu_minutes={b.cpu_minutes:g} used"
    for cid in ids:
        cand = state.candidates[cid]
        if cand.recover_caps is None:
            cand.recover_caps = {}
        cand.recover_caps[str(rung)] = share
        if share <= 0:
            _cut_short(
                state,
                cand,
                rung,
                f"rung {rung}: no recovery (rungs[{rung}] asks {planned_text}): the CPU budget is spent ({spent})",
            )
        else:  # cut short only if the cap stops it before its steps (see _record)
            if cand.cap_reasons is None:
                cand.cap_reasons = {}
            cand.cap_reasons[str(rung)] = (
                f"rung {rung}: recovery capped at {share:.3f} CPU minutes (rungs[{rung}] asks {planned_text}) "
                f"by the CPU budget: {left:.2f} minutes left ({spent}) shared by {len(ids)} candidate(s)"
            )


def _cut_short(state: SearchState, cand: Candidate, rung: int, why: str) -> None:
    if cand.cut_short is None:
        cand.cut_short = []
    cand.cut_short.append(why)
    state.budget.cut_short.append({"id": cand.id, "label": cand.label, "rung": rung, "why": why})


def explore_batch(cfg: RunConfig, state: SearchState) -> list[dict]:
    """Next rung-0 probes: one per unfinished chain (bisection) or every value (grid), in
    chain priority order, as far as the budget goes."""
    sc = cfg.search
    assert sc is not None
    batch: list[dict] = []
    for ch in state.chains:
        if ch.done:
            continue
        if sc.bisect:
            if ch.hi - ch.lo <= 1:
                ch.done, ch.why = True, "bisection converged"
                continue
            if ch.lo == -1 and ch.hi == len(ch.ids):
                idx = first_probe(ch.first_values, ch.structured, sc.max_step_share)
            else:
                idx = (ch.lo + ch.hi) // 2
            wanted = [ch.ids[idx]]
        else:
            wanted = [cid for cid in ch.ids if state.candidates[cid].status == "untried"]
            ch.done, ch.why = True, "grid: every value tried"
        for cid in wanted:
            why = _budget_left(state)
            if why:
                ch.done, ch.why = True, why
                state.candidates[cid].stopped = f"not tried ({why})"
                break
            state.budget.candidates_used += 1
            state.candidates[cid].status = "running"
            batch.append(_task(state, cid, 0))
    return batch


def in_race(state: SearchState, cfg: RunConfig, result: dict, rung: int) -> bool:
    tol = cfg.search.rungs[rung].tolerance  # type: ignore[union-attr]
    return result.get("status") == "ok" and result["difference"] >= -(state.margin + tol) - 1e-12


def compression_key(state: SearchState, cand: Candidate) -> float:
    """Smaller is more compressed."""
    value = cand.objective_value
    if value is None:
        return math.inf
    return value if OBJECTIVES[state.objective] else -value


def _record(state: SearchState, cfg: RunConfig, results: list[dict]) -> None:
    for res in results:
        if res.get("kind") == "noop":
            continue
        cand = state.candidates[res["id"]]
        rung = int(res["rung"])
        cand.results[str(rung)] = res
        b = state.budget
        b.cpu_seconds += float(res.get("cpu_seconds", 0.0))
        b.cpu_seconds_cached += float(res.get("cpu_seconds_cached", 0.0))
        state.rung_counts[rung] += 1
        reason = (cand.cap_reasons or {}).get(str(rung))
        if reason and res.get("status") == "ok":  # did the cap stop its recovery?
            for rep in res.get("recovery") or []:
                if rep.get("rung") == rung and rep.get("budget_reached"):
                    steps = cfg.search.rungs[rung].recover_steps  # type: ignore[union-attr]
                    _cut_short(
                        state,
                        cand,
                        rung,
                        f"{reason}; its time ran out after {rep.get('steps')} of {steps} steps",
                    )
        if res.get("status") != "ok":
            cand.status = "failed"
            cand.stopped = f"failed at rung {rung}: {res.get('error')}"
            continue
        if rung == 0 and res.get("objective_value") is not None:
            cand.objective_value = res["objective_value"]
        ok = in_race(state, cfg, res, rung)
        cand.status = f"rung{rung}"
        if not ok:
            tol = cfg.search.rungs[rung].tolerance  # type: ignore[union-attr]
            cand.stopped = (
                f"out at rung {rung}: accuracy difference {res['difference']:+.3f} on {res['n_items']} search items "
                f"is below -(margin {state.margin:g} + tolerance {tol:g})"
            )


def _update_bisection(state: SearchState, results: list[dict]) -> None:
    by_id = {r["id"]: r for r in results if r.get("kind") != "noop" and int(r["rung"]) == 0}
    for ch in state.chains:
        for i, cid in enumerate(ch.ids):
            if cid not in by_id:
                continue
            cand = state.candidates[cid]
            if cand.stopped is None and cand.status == "rung0":
                ch.lo = max(ch.lo, i)
            else:
                ch.hi = min(ch.hi, i)
        if (
            ch.lo >= ch.hi
        ):  # noisy slice: a less compressed value failed after a more compressed passed
            ch.hi = ch.lo + 1
    # candidates a bisection skipped, by the monotone assumption
    for ch in state.chains:
        for i, cid in enumerate(ch.ids):
            cand = state.candidates[cid]
            if cand.status != "untried" or cand.stopped:
                continue
            if i < ch.lo:
                cand.stopped = f"skipped by bisection: a more compressed value ({state.candidates[ch.ids[ch.lo]].label}) stayed in the race"
            elif i > ch.hi and ch.hi < len(ch.ids):
                cand.stopped = f"skipped by bisection: a less compressed value ({state.candidates[ch.ids[ch.hi]].label}) was already out"


def select_survivors(state: SearchState, cfg: RunConfig, rung: int) -> list[str]:
    """Successive halving: of the candidates still in the race after ``rung``, keep
    ceil(n / eta) (n = candidates scored at that rung): the most compressed, with the most
    accurate one kept as well so that certification has a safe first step (on a tie in
    accuracy, the less compressed one); where that leaves room for one only, both go on."""
    sc = cfg.search
    assert sc is not None
    key = str(rung)
    scored = [c for c in state.candidates.values() if key in c.results]
    alive = [c for c in scored if c.stopped is None and c.status == f"rung{rung}"]
    keep = max(1, math.ceil(len(scored) / sc.eta))
    alive.sort(key=lambda c: (compression_key(state, c), -c.results[key]["difference"], c.id))
    chosen = alive[:keep]
    if alive:
        # the safe step: the most accurate, and of equally accurate ones the LEAST compressed
        # (taking the more compressed one on a tie left certification without a fallback).
        # With room for one survivor only, the safe step goes on beside the most compressed:
        # keeping the most compressed alone left certification nothing to fall back on when
        # it failed (examples/search.yaml: width 35% alone reached certification and failed
        # while width 25% had tied dense at rung 1).
        safest = max(alive, key=lambda c: (c.results[key]["difference"], compression_key(state, c)))
        if safest not in chosen:
            if keep >= 2:
                chosen[-1] = safest
            else:
                chosen.append(safest)
    chosen_ids = {c.id for c in chosen}
    for c in alive:
        if c.id not in chosen_ids:
            c.stopped = f"out at rung {rung}: successive halving kept the {keep} most compressed of {len(scored)} (and the most accurate)"
    return [c.id for c in chosen]


def check_sample_size(state: SearchState, cfg: RunConfig) -> dict:
    """Whether the certification set can detect the margin at the discordance observed at
    rung 0 (median over the candidates still in the race; the assumed value before that)."""
    sc = cfg.search
    assert sc is not None
    observed = [
        c.results["0"]["discordance"]
        for c in state.candidates.values()
        if "0" in c.results and c.results["0"].get("status") == "ok" and c.stopped is None
    ]
    discordance = statistics.median(observed) if observed else sc.certification.assumed_discordance
    size = noninferiority_sample_size(
        state.margin,
        sc.alpha,
        sc.power,
        discordance,
        available=state.split["n_certification"],
    )
    out = dict(size.to_dict(), observed=bool(observed), message=size.message())
    state.sample_size = out
    return out


def advance(state: SearchState, cfg: RunConfig, results: list[dict]) -> list[dict]:
    """Record a step's results; return the next batch (``[NOOP]`` when nothing is left to
    run, so a compiled pipeline's fixed steps still have one item to loop over)."""
    _record(state, cfg, results)
    state.step += 1
    if state.error or state.phase == "done":
        return [NOOP]
    batch: list[dict] = []
    if state.phase == "explore":
        _update_bisection(state, results)
        if state.step == 1:
            size = check_sample_size(state, cfg)
            if not size["enough"]:
                state.error = "certification set too small: " + size["message"]
                state.phase = "done"
                return [NOOP]
        if state.step < state.explore_rounds:
            batch = explore_batch(cfg, state)
            if batch:
                return batch
            if any(not ch.done for ch in state.chains):
                return [NOOP]
        for ch in state.chains:
            if not ch.done:
                ch.done, ch.why = True, "rung 0 rounds used up"
        if state.step < state.explore_rounds:
            return [NOOP]  # wait for the scheduled end of exploration
        state.phase, state.rung = "rung", 1
    elif state.phase == "rung":
        assert state.rung is not None  # set when the rungs began
        state.rung += 1
    rung = state.rung
    assert rung is not None
    if rung >= state.n_rungs:
        state.phase = "done"
        return [NOOP]
    # The budget caps exploration (new candidates) and bounds the survivors' recovery; the
    # survivors are still evaluated at every rung, so a spent budget still ends in a
    # certified answer when there is one.
    survivors = select_survivors(state, cfg, rung - 1)
    cap_recovery(state, cfg, survivors, rung)
    batch = [_task(state, cid, rung) for cid in survivors]
    return batch or [NOOP]


def certification_order(state: SearchState, cfg: RunConfig) -> list[str]:
    """The candidates certification tests, fixed before it looks at any certification
    item: those still in the race after the last rung, least to most compressed (at most
    ``certification.max_candidates``, the most compressed ones)."""
    sc = cfg.search
    assert sc is not None
    last = state.n_rungs - 1
    alive = [
        c
        for c in state.candidates.values()
        if str(last) in c.results and c.stopped is None and c.status == f"rung{last}"
    ]
    alive.sort(key=lambda c: (compression_key(state, c), c.id), reverse=True)
    return [c.id for c in alive[-sc.certification.max_candidates :]]
