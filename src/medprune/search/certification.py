"""Certification of a search: the final rung's candidates, in the order the plan gives, are
evaluated on the certification set and tested in fixed sequence (:mod:`medprune.search.certify`);
the answer, and why each candidate stopped, is recorded in the state."""

from __future__ import annotations

from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.runner import evaluation_settings
from medprune.progress import Progress
from medprune.search import plan as planner
from medprune.search.candidate import cached, content_hash, with_sections
from medprune.search.certify import certify_sequence, gate_on_certification, smallest_per_source
from medprune.search.remote import localize_data
from medprune.search.state import SearchState
from medprune.search.workspace import evaluate_into


def certify_candidates(cfg: RunConfig, state: SearchState, *, progress: Progress = print) -> dict:
    """Fixed-sequence certification of the final rung's candidates; records the answer in
    ``state.certification`` and returns it (the caller saves the state)."""
    search = cfg.search
    assert search is not None  # only a config with a search section runs a search
    ws = state.ws
    if state.error:
        state.certification = {
            "order": [],
            "certified": None,
            "decisions": {},
            "why": state.error,
        }
        return state.certification
    order = planner.certification_order(state, cfg)
    last = state.last_rung
    ecfg = localize_data(with_sections(cfg, evaluate=ws.certification_eval))
    eval_hash = content_hash(evaluation_settings(ecfg.evaluate, cfg.model.dtype))
    gate_root = Path(ws.run_dir) / "certification"

    def test(cid: str):
        cand = state.candidates[cid]
        model_dir = Path(cand.results[last]["model_dir"])
        entry = ws.candidate_dir(cid) / f"certeval-{model_dir.parent.name}-{eval_hash}"
        cached(
            entry,
            lambda tmp: evaluate_into(
                ecfg, model_dir, tmp, f"{cand.label} (certification)", progress
            ),
            progress,
        )
        decision = gate_on_certification(
            cfg,
            ws.baseline_certification_eval,
            entry,
            gate_root / cid,
            state.independence,  # made by setup on the downloaded files
        )
        cand.certification = {
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
            f"certification of {cand.label}: {'PASSED' if decision.passed else 'FAILED'}"
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
                "label": None if best is None else state.candidates[best].label,
            }
            progress(
                f"certification on {source} alone: "
                + (
                    f"{state.candidates[best].label} (the most compressed it certifies)"
                    if best
                    else "not even the least compressed candidate"
                )
            )
    sequence = order[: index + 2] if index + 1 < len(order) else order  # what the sequence tested
    for i, cid in enumerate(order):
        cand = state.candidates[cid]
        if cid not in decisions or cid not in sequence:
            cand.stopped = (
                "not tested: an earlier candidate in the certification sequence failed"
                + (" (evaluated only for the per-source report)" if cid in decisions else "")
            )
        elif not decisions[cid].passed:
            cand.stopped = "failed certification: " + "; ".join(decisions[cid].reasons)
        elif i < index:
            cand.stopped = "certified, but a more compressed candidate was certified after it"
    certified = order[index] if index >= 0 else None
    why = (
        None
        if certified
        else (
            "no candidate reached certification"
            if not order
            else f"no candidate passed on every source: {state.candidates[order[0]].label} "
            "(first in the sequence) failed certification: "
            + "; ".join(decisions[order[0]].reasons)
        )
    )
    state.certification = {
        "order": order,
        "certified": certified,
        "why": why,
        "alpha": search.alpha,
        "method": search.certification.method,
        "sources": {cid: [v.to_dict() for v in d.sources] for cid, d in decisions.items()},
        "smallest_per_source": per_source,
        "independence": state.independence if state.independence is not None else [],
    }
    if certified:
        state.candidates[
            certified
        ].stopped = (
            "CERTIFIED: the most compressed candidate that passed the gate on the certification set"
        )
        state.candidates[certified].status = "certified"
    return state.certification
