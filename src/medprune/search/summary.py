"""The search summary: every candidate with its metrics and why it stopped, the split, the
certification; what ``summary.json`` and the search report show."""

from __future__ import annotations


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
