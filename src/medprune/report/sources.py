"""Per-source sections of the report: each clinical source (the built-in MCQ set, every
``evaluate.mcq_sources`` entry, the visit notes, the Claude judge) is shown on its own, so a
gate that rests on several sources shows each one's evidence separately."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class SourceSection:
    name: str
    description: str
    rows: list[tuple[str, float | None, float | None]]  # metric, baseline, candidate
    notes: list[str] = field(default_factory=list)


def _mcq_rows(b: dict, c: dict) -> tuple[list, list[str]]:
    rows = [
        ("items", b.get("n"), c.get("n")),
        ("accuracy", b.get("acc"), c.get("acc")),
        ("accuracy_norm", b.get("acc_norm"), c.get("acc_norm")),
    ]
    notes = []
    bc, cc = b.get("classes"), c.get("classes")
    if bc and cc:
        rows.append(("macro_f1", bc["macro_f1"], cc["macro_f1"]))
        for label in bc["labels"]:
            rows.append(
                (f"F1 '{label}'", bc["per_class"][label]["f1"], cc["per_class"][label]["f1"])
            )
            rows.append(
                (
                    f"predicted '{label}'",
                    bc["per_class"][label]["predicted"],
                    cc["per_class"][label]["predicted"],
                )
            )
        notes.append(
            f"majority-class baseline (always '{bc['majority_label']}'): {bc['majority_baseline']:.3f}; "
            "a model below it has learned nothing usable from this source"
        )
    return rows, notes


_NOTE_ROWS = (
    "n",
    "rouge1",
    "rouge2",
    "rougeLsum",
    "section_coverage",
    "hallucination_rate",
    "omission_rate",
    "reference_hallucination_rate",
    "mean_new_tokens",
    "budget_hits",
    "truncated_items",
)


def judge_disagreements(
    base_notes: Sequence[dict], cand_notes: Sequence[dict], drop: int = 2
) -> list[dict]:
    """Notes whose judge ``overall`` score fell by ``drop`` or more from baseline to candidate."""
    base = {n["id"]: n.get("judge") for n in base_notes}
    out = []
    for n in cand_notes:
        b, c = base.get(n["id"]), n.get("judge")
        if b and c and b["overall"] - c["overall"] >= drop:
            out.append(
                {
                    "id": n["id"],
                    "baseline": b["overall"],
                    "candidate": c["overall"],
                    "reason": c.get("reason", ""),
                }
            )
    return out


def source_sections(
    baseline: dict,
    candidate: dict,
    *,
    baseline_notes: Sequence[dict] | None = None,
    candidate_notes: Sequence[dict] | None = None,
) -> list[SourceSection]:
    """One section per source evaluated in both results."""
    out: list[SourceSection] = []
    if baseline.get("mcq") and candidate.get("mcq"):
        rows, notes = _mcq_rows(baseline["mcq"], candidate["mcq"])
        out.append(SourceSection("mcq", "evaluate.mcq (multiple choice)", rows, notes))
    for name in sorted(
        set(baseline.get("mcq_sources") or {}) & set(candidate.get("mcq_sources") or {})
    ):
        rows, notes = _mcq_rows(baseline["mcq_sources"][name], candidate["mcq_sources"][name])
        out.append(
            SourceSection(name, f"evaluate.mcq_sources '{name}' (multiple choice)", rows, notes)
        )
    bn, cn = baseline.get("visit_notes"), candidate.get("visit_notes")
    if bn and cn:
        rows = [(k, bn.get(k), cn.get(k)) for k in _NOTE_ROWS]
        for cat in sorted(set(bn.get("per_category", {})) & set(cn.get("per_category", {}))):
            rows.append(
                (
                    f"rougeLsum [{cat}]",
                    bn["per_category"][cat]["rougeLsum"],
                    cn["per_category"][cat]["rougeLsum"],
                )
            )
            rows.append(
                (
                    f"hallucination_rate [{cat}]",
                    bn["per_category"][cat]["hallucination_rate"],
                    cn["per_category"][cat]["hallucination_rate"],
                )
            )
        notes = [
            f"concepts: {cn.get('vocabulary', '?')}, quantities with units, medication names; the reference notes' own "
            f"hallucination rate ({bn.get('reference_hallucination_rate', 0):.3f}) is what paraphrase costs the proxy"
        ]
        out.append(
            SourceSection(
                "visit_notes", "evaluate.visit_notes (dialogue -> clinical note)", rows, notes
            )
        )
    bj, cj = baseline.get("judge"), candidate.get("judge")
    if bj or cj:
        bj, cj = bj or {}, cj or {}
        keys = sorted(set(bj.get("metrics", {})) | set(cj.get("metrics", {})))
        rows = [(k, bj.get("metrics", {}).get(k), cj.get("metrics", {}).get(k)) for k in keys]
        rows += [("notes judged", bj.get("n"), cj.get("n"))]
        for key in ("input_tokens", "output_tokens", "requests", "retries"):
            rows.append((key, (bj.get("usage") or {}).get(key), (cj.get("usage") or {}).get(key)))
        notes = []
        for label, j in (("baseline", bj), ("candidate", cj)):
            if not j.get("complete"):
                notes.append(
                    f"{label} judge INCOMPLETE: {j.get('error') or 'did not run'} (the gate fails closed)"
                )
        if baseline_notes is not None and candidate_notes is not None:
            dis = judge_disagreements(baseline_notes, candidate_notes)
            notes.append(f"{len(dis)} note(s) the judge scored 2+ points lower for the candidate")
            notes += [
                f"{d['id']}: overall {d['baseline']} -> {d['candidate']}: {d['reason']}"
                for d in dis[:10]
            ]
        out.append(
            SourceSection(
                "judge", f"Claude judge ({cj.get('model') or bj.get('model')})", rows, notes
            )
        )
    return out
