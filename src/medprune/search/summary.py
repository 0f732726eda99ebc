"""The search summary: every candidate with its metrics and why it stopped, the split, the
certification; what ``summary.json`` and the search report show."""

from __future__ import annotations

from medprune.search.state import SearchState

_ROW_KEYS = (
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


def search_summary(state: SearchState) -> dict:
    """Every candidate with its metrics and why it stopped; the split; the certification."""
    cands = []
    for c in state.candidates.values():
        record = c.to_dict()
        row = {k: record[k] for k in _ROW_KEYS}
        row["results"] = {
            r: {k: v for k, v in res.items() if k not in ("traceback",)}
            for r, res in record["results"].items()
        }
        cands.append(row)
    cert = state.certification or {}
    certified = cert.get("certified")
    best = state.candidates.get(certified) if certified else None
    data = state.to_dict()
    return {
        "kind": "search",
        "run_id": state.workspace.run_id if state.workspace else None,
        "objective": state.objective,
        "margin": state.margin,
        "error": state.error,
        "certified": None
        if best is None
        else {
            "id": best.id,
            "label": best.label,
            "objective_value": best.objective_value,
            "certification": best.certification,
            "search": best.results.get(state.last_rung),
        },
        "registered": state.registered,
        "certification": cert,
        "split": {
            k: v for k, v in state.split.items() if k not in ("search_ids", "certification_ids")
        },
        "split_ids": {
            "search": state.split["search_ids"],
            "certification": state.split["certification_ids"],
        },
        "sample_size": state.sample_size,
        "independence": state.independence if state.independence is not None else [],
        "baseline": state.baseline,
        "rung_counts": state.rung_counts,
        "budget": data["budget"],
        "cpu_minutes": state.budget.cpu_seconds / 60,
        "chains": [
            {k: ch[k] for k in ("name", "lo", "hi", "done", "why")} for ch in data["chains"]
        ],
        "candidates": sorted(cands, key=lambda r: (r["chain"], r["index"])),
    }
