"""The report renders for a passed and a failed gate, with the gate table and images."""

from __future__ import annotations

import base64
import re

import pytest

from medprune.config import GateConfig
from medprune.gate.decision import decide
from medprune.report.data import confusion_matrix
from medprune.report.html import render_report


def _results(acc, latency, nonzero, ppl=10.0):
    return {
        "complete": True,
        "settings": {"seq_len": 64},
        "mcq": {
            "acc": acc,
            "acc_norm": acc,
            "n": 60,
            "per_category": {
                "dosing": {"acc": acc, "acc_norm": acc, "n": 30},
                "contraindications": {"acc": acc, "acc_norm": acc, "n": 30},
            },
        },
        "perplexity": {
            "perplexity": ppl,
            "nll": 2.3,
            "tokens": 100,
            "texts": 3,
            "bits_per_byte": 1.2,
        },
        "efficiency": {
            "total_params": 10**6,
            "nonzero_params": nonzero,
            "size_bytes": 4 * 10**6,
            "latency_ms_p50": latency,
            "latency_ms_p95": latency * 1.2,
            "tokens_per_s": 1000 / latency,
        },
    }


def _preds(correct, categories):
    return [
        {
            "id": f"q{i}",
            "category": cat,
            "question": f"Question <{i}> about {cat}?",
            "options": ["yes", "no", "maybe"],
            # answers spread over the options: the dense model beats always-the-same-answer
            "answer": i % 3,
            "pred": i % 3 if c else (i + 2) % 3,
            "correct": c,
            "correct_norm": c,
            "loglikelihoods": [
                -1.0 if k == (i % 3 if c else (i + 2) % 3) else -3.0 for k in range(3)
            ],
        }
        for i, (c, cat) in enumerate(zip(correct, categories, strict=True))
    ]


CATS = ["dosing"] * 30 + ["contraindications"] * 30


@pytest.mark.parametrize("passed", [True, False])
def test_report_renders_gate_table_and_images(tmp_path, passed):
    base_correct = [True] * 45 + [False] * 15
    cand_correct = (
        list(base_correct) if passed else [False] * 10 + base_correct[10:]
    )  # 10 dosing regressions
    bp, cp = _preds(base_correct, CATS), _preds(cand_correct, CATS)
    base, cand = _results(0.75, 20.0, 10**6), _results(sum(cand_correct) / 60, 15.0, 5 * 10**5)
    cfg = GateConfig(
        min_accuracy=0.6,
        critical_items=["q3"],
        non_inferiority={"margin": 0.05, "n_resamples": 500},
    )
    gate = decide(base, cand, cfg, baseline_predictions=bp, candidate_predictions=cp)
    assert gate.passed is passed

    paths = render_report(
        tmp_path,
        gate=gate.to_dict(),
        baseline=base,
        candidate=cand,
        baseline_predictions=bp,
        candidate_predictions=cp,
        critical_ids=cfg.critical_items,
        run_info={"run": "r1"},
    )
    html = paths["html"].read_text()
    md = paths["md"].read_text()
    assert paths["html"].name == "report.html" and paths["md"].name == "report.md"
    # the gate table has one row per check, with outcomes
    table = re.search(r'<table class="gate-table">(.*?)</table>', html, re.DOTALL).group(1)
    assert table.count("<tr>") == len(gate.checks) + 1
    for c in gate.checks:
        assert f"<td>{c.name}</td>" in table
    assert ("Gate PASSED" if passed else "Gate FAILED") in html
    assert ("FAIL" in table) is (not passed)
    # figures are embedded PNGs (category bars, accuracy vs size/latency, the interval); no external assets
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'(src|href)="(http|//)', html)
    # user text is escaped
    assert "Question &lt;" in html or passed
    assert "<table" in html and "Baseline vs candidate" in html and "Non-inferiority" in html
    assert (
        "| check | metric | value | threshold | outcome |" in md and "data:image/png;base64," in md
    )
    if not passed:
        assert "Why it failed" in html and "q3" in html and "critical" in html
        # worst category first: dosing lost 10 items
        cat_table = re.search(
            r'<table class="category-table">(.*?)</table>', html, re.DOTALL
        ).group(1)
        assert cat_table.index("dosing") < cat_table.index("contraindications")
        assert "**FAIL**" in md


def test_report_without_predictions_or_interval_still_renders(tmp_path):
    base, cand = _results(0.5, 10.0, 100), {"complete": False}
    gate = decide(base, cand, GateConfig())
    paths = render_report(tmp_path, gate=gate.to_dict(), baseline=base, candidate=cand)
    html = paths["html"].read_text()
    assert "Gate FAILED" in html and "candidate evaluation did not complete" in html


def test_confusion_matrix_counts_answer_vs_prediction():
    labels, m = confusion_matrix(_preds([True, False, False], ["a", "a", "b"]))
    assert labels == ["A", "B", "C"]
    # item 0: answer A, predicted A; item 1: answer B, predicted A; item 2: answer C, predicted B
    assert m == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_report_shows_every_source_with_its_holm_level_and_independence(tmp_path):
    base_correct = [True] * 45 + [False] * 15
    bp = _preds(base_correct, CATS)
    # PubMedQA-like source on which the dense model is below always-"yes": uninformative
    pubmed_b = [dict(p, answer=0, correct=k < 30) for k, p in enumerate(bp)]
    cfg = GateConfig(
        non_inferiority={"margin": 0.05, "n_resamples": 500},
        source_non_inferiority={"pubmedqa": {"margin": 0.05, "n_resamples": 500}},
    )
    gate = decide(
        _results(0.75, 20.0, 10**6),
        _results(0.75, 15.0, 5 * 10**5),
        cfg,
        baseline_predictions=bp,
        candidate_predictions=bp,
        baseline_sources={"pubmedqa": pubmed_b},
        candidate_sources={"pubmedqa": pubmed_b},
        independent={"mcq": False, "pubmedqa": True},
    ).to_dict()
    gate["independence"] = [
        {
            "name": "mcq",
            "independent": False,
            "reasons": ["same source 'hpo+icd10cm' as recover.data"],
        },
        {"name": "pubmedqa", "independent": True, "reasons": []},
    ]
    paths = render_report(
        tmp_path,
        gate=gate,
        baseline=_results(0.75, 20.0, 10**6),
        candidate=_results(0.75, 15.0, 5 * 10**5),
        baseline_predictions=bp,
        candidate_predictions=bp,
        critical_ids=[],
        run_info={},
    )
    html, md = paths["html"].read_text(), paths["md"].read_text()
    table = re.search(r'<table class="source-table">(.*?)</table>', html, re.DOTALL).group(1)
    assert table.count("<tr>") == 3  # header + two sources
    assert "<td>uninformative</td>" in table and "<td>passed</td>" in table
    assert "NO: same source &#x27;hpo+icd10cm&#x27; as recover.data" in table
    assert "majority" in table and "family-wise error held at 0.025" in html
    # the only informative source is dependent: the warning is shown
    assert "rests only on sources that are NOT independent" in html
    assert "## Non-inferiority per source (Holm, family-wise alpha 0.025)" in md
    assert "| uninformative |" in md
