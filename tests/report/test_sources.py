"""The report shows each clinical source on its own: PubMedQA with macro-F1 and the majority
baseline, the visit notes with their faithfulness proxy, the judge with its token counts,
incompleteness and the notes it scored much lower for the candidate."""

from __future__ import annotations

from medprune.report.data import build_report_data
from medprune.report.markdown import render_markdown


def classes(f1_yes, majority=0.552):
    per = {
        k: {"precision": 0.5, "recall": 0.5, "f1": f, "support": 10, "predicted": 10}
        for k, f in (("yes", f1_yes), ("no", 0.3), ("maybe", 0.0))
    }
    return {
        "labels": ["yes", "no", "maybe"],
        "macro_f1": (f1_yes + 0.3) / 3,
        "per_class": per,
        "confusion": [[0] * 3] * 3,
        "majority_label": "yes",
        "majority_baseline": majority,
    }


def results(acc, f1_yes, rouge, judge):
    return {
        "complete": True,
        "mcq_sources": {
            "pubmedqa": {
                "acc": acc,
                "acc_norm": acc,
                "n": 40,
                "per_category": {},
                "classes": classes(f1_yes),
            }
        },
        "visit_notes": {
            "n": 3,
            "rouge1": rouge,
            "rouge2": 0.1,
            "rougeLsum": rouge,
            "section_coverage": 0.5,
            "hallucination_rate": 0.3,
            "omission_rate": 0.6,
            "reference_hallucination_rate": 0.29,
            "mean_new_tokens": 150.0,
            "budget_hits": 1,
            "truncated_items": 2,
            "vocabulary": "HPO test",
            "per_category": {"aci": {"n": 3, "rougeLsum": rouge, "hallucination_rate": 0.3}},
        },
        "judge": judge,
    }


def test_report_has_a_section_per_source():
    judge_ok = {
        "complete": True,
        "model": "claude-x",
        "n": 2,
        "metrics": {"judge_overall": 4.0},
        "usage": {"input_tokens": 240, "output_tokens": 90, "requests": 2, "retries": 0},
    }
    judge_out = {
        "complete": False,
        "model": "claude-x",
        "n": 1,
        "metrics": {},
        "error": "item 'D2': HTTP 529",
        "usage": {"input_tokens": 120, "output_tokens": 45, "requests": 4, "retries": 3},
    }
    base_notes = [
        {"id": "D1", "judge": {"overall": 5, "reason": "fine"}},
        {"id": "D2", "judge": {"overall": 4}},
    ]
    cand_notes = [
        {"id": "D1", "judge": {"overall": 2, "reason": "invents a warfarin dose"}},
        {"id": "D2"},
    ]
    data = build_report_data(
        gate={"passed": False, "reasons": ["x"], "checks": []},
        baseline=results(0.6, 0.7, 0.3, judge_ok),
        candidate=results(0.5, 0.6, 0.25, judge_out),
        baseline_notes=base_notes,
        candidate_notes=cand_notes,
    )
    assert [s.name for s in data.sources] == ["pubmedqa", "visit_notes", "judge"]
    pubmed = {n: (b, c) for n, b, c in data.sources[0].rows}
    assert pubmed["accuracy"] == (0.6, 0.5) and pubmed["F1 'yes'"] == (0.7, 0.6)
    md = render_markdown(data)
    assert "### pubmedqa: evaluate.mcq_sources 'pubmedqa' (multiple choice)" in md
    assert "majority-class baseline (always 'yes'): 0.552" in md
    assert "| rougeLsum [aci] | 0.3 | 0.25 | -0.05 (-16.7%) |" in md
    assert "candidate judge INCOMPLETE: item 'D2': HTTP 529 (the gate fails closed)" in md
    assert "1 note(s) the judge scored 2+ points lower for the candidate" in md
    assert "D1: overall 5 -> 2: invents a warfarin dose" in md
