"""The gate on several clinical sources: METRIC@SOURCE thresholds, visit-note checks, and a
paired non-inferiority check per source (MCQ correctness or a per-note score)."""

from __future__ import annotations

import pytest

from medprune.config import GateConfig, parse_config
from medprune.errors import ConfigError
from medprune.gate.decision import decide
from medprune.gate.stats import paired_bootstrap_mean_ci


def results(pubmed_acc=0.6, macro_f1=0.4, rouge=0.3, halluc=0.2, omit=0.5, coverage=0.8):
    return {
        "complete": True,
        "settings": {"seq_len": 512},
        "mcq_sources": {
            "pubmedqa": {
                "acc": pubmed_acc,
                "acc_norm": pubmed_acc,
                "n": 50,
                "per_category": {},
                "classes": {"macro_f1": macro_f1, "majority_baseline": 0.55},
            }
        },
        "visit_notes": {
            "n": 10,
            "rouge1": rouge + 0.1,
            "rouge2": rouge - 0.1,
            "rougeLsum": rouge,
            "section_coverage": coverage,
            "hallucination_rate": halluc,
            "omission_rate": omit,
            "reference_hallucination_rate": 0.15,
        },
    }


def notes(scores: list[float], key="rougeLsum") -> list[dict]:
    return [{"id": f"D{i}", key: s} for i, s in enumerate(scores)]


def mcq(correct: list[bool]) -> list[dict]:
    return [{"id": f"p{i}", "correct": c, "correct_norm": c} for i, c in enumerate(correct)]


def check(decision, name):
    [c] = [c for c in decision.checks if c.name == name]
    return c


@pytest.mark.parametrize(
    ("gate", "candidate", "name", "passes"),
    [
        (
            {"floors": {"accuracy@pubmedqa": 0.55}},
            {"pubmed_acc": 0.55},
            "floor_accuracy@pubmedqa",
            True,
        ),
        (
            {"floors": {"accuracy@pubmedqa": 0.55}},
            {"pubmed_acc": 0.5499},
            "floor_accuracy@pubmedqa",
            False,
        ),
        (
            {"max_drop": {"macro_f1@pubmedqa": 0.05}},
            {"macro_f1": 0.35},
            "max_drop_macro_f1@pubmedqa",
            True,
        ),
        (
            {"max_drop": {"macro_f1@pubmedqa": 0.05}},
            {"macro_f1": 0.3499},
            "max_drop_macro_f1@pubmedqa",
            False,
        ),
        ({"max_drop": {"rougeLsum": 0.05}}, {"rouge": 0.25}, "max_drop_rougeLsum", True),
        (
            {"max_drop": {"section_coverage": 0.1}},
            {"coverage": 0.69},
            "max_drop_section_coverage",
            False,
        ),
        (
            {"max_increase": {"hallucination_rate": 0.05}},
            {"halluc": 0.25},
            "max_increase_hallucination_rate",
            True,
        ),
        (
            {"max_increase": {"hallucination_rate": 0.05}},
            {"halluc": 0.2501},
            "max_increase_hallucination_rate",
            False,
        ),
        (
            {"max_increase": {"omission_rate": 0.1}},
            {"omit": 0.61},
            "max_increase_omission_rate",
            False,
        ),
        ({"floors": {"rouge1": 0.3}}, {"rouge": 0.2}, "floor_rouge1", True),
        (
            {"ceilings": {"hallucination_rate": 0.3}},
            {"halluc": 0.31},
            "ceiling_hallucination_rate",
            False,
        ),
    ],
)
def test_source_and_note_thresholds(gate, candidate, name, passes):
    d = decide(results(), results(**candidate), GateConfig(**gate))
    assert check(d, name).passed is passes and d.passed is passes


def test_a_metric_of_a_source_that_was_not_evaluated_fails_closed():
    base = results()
    cand = results()
    del cand["visit_notes"]
    d = decide(base, cand, GateConfig(max_drop={"rougeLsum": 0.1}))
    assert not d.passed and "not measured" in check(d, "max_drop_rougeLsum").message


def test_paired_non_inferiority_per_source():
    cfg = GateConfig(
        source_non_inferiority={
            "pubmedqa": {"margin": 0.1, "min_items": 10},
            "visit_notes": {"margin": 0.05, "metric": "rougeLsum", "min_items": 10},
        }
    )
    base_notes = notes([0.30 + 0.01 * (i % 5) for i in range(20)])
    same = decide(
        results(),
        results(),
        cfg,
        baseline_sources={"pubmedqa": mcq([True, False] * 10), "visit_notes": base_notes},
        candidate_sources={"pubmedqa": mcq([True, False] * 10), "visit_notes": base_notes},
    )
    assert same.passed
    notes_check = check(same, "non_inferiority_visit_notes")
    assert notes_check.value == pytest.approx(0.0) and "on visit_notes" in notes_check.message
    worse = notes([s["rougeLsum"] - 0.1 for s in base_notes])
    d = decide(
        results(),
        results(),
        cfg,
        baseline_sources={"pubmedqa": mcq([True] * 20), "visit_notes": base_notes},
        candidate_sources={"pubmedqa": mcq([True] * 12 + [False] * 8), "visit_notes": worse},
    )
    assert not check(d, "non_inferiority_pubmedqa").passed
    assert not check(d, "non_inferiority_visit_notes").passed
    assert check(d, "non_inferiority_visit_notes").value == pytest.approx(-0.1)
    missing = decide(
        results(),
        results(),
        cfg,
        baseline_sources={"pubmedqa": mcq([True] * 20)},
        candidate_sources={},
    )
    assert not missing.passed
    assert (
        "no per-item results for baseline and candidate"
        in check(missing, "non_inferiority_visit_notes").message
    )


def test_notes_without_a_score_are_left_out_of_the_pairing():
    cfg = GateConfig(
        source_non_inferiority={
            "visit_notes": {"margin": 0.1, "metric": "section_coverage", "min_items": 2}
        }
    )
    base = notes([1.0, None, 0.5], "section_coverage")
    d = decide(
        results(),
        results(),
        cfg,
        baseline_sources={"visit_notes": base},
        candidate_sources={"visit_notes": base},
    )
    assert check(d, "non_inferiority_visit_notes").details["n"] == 2


def test_mean_bootstrap_interval():
    ci = paired_bootstrap_mean_ci([0.5, 0.4, 0.3, 0.6], [0.5, 0.3, 0.3, 0.7], n_resamples=500)
    assert ci.difference == pytest.approx(0.0) and ci.baseline_only == 1 and ci.candidate_only == 1
    assert ci.lower <= 0.0 <= ci.upper
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_mean_ci([0.1], [0.1, 0.2])


@pytest.mark.parametrize(
    ("evaluate", "gate", "message"),
    [
        (
            {"mcq": "/x.jsonl"},
            {"floors": {"accuracy@pubmedqa": 0.5}},
            "names source 'pubmedqa', which is not in evaluate.mcq_sources",
        ),
        (
            {"mcq": "/x.jsonl"},
            {"source_non_inferiority": {"visit_notes": {"margin": 0.1, "metric": "rougeLsum"}}},
            "gate.source_non_inferiority.visit_notes: evaluate.visit_notes is not set",
        ),
        (
            {"mcq_sources": [{"name": "pubmedqa", "data": "/p.json"}]},
            {"source_non_inferiority": {"pubmedqa": {"margin": 0.1, "metric": "rougeLsum"}}},
            "gate.source_non_inferiority.pubmedqa.metric: 'rougeLsum' is a visit-note score",
        ),
        (
            {"visit_notes": {"data": "/a.json"}},
            {"source_non_inferiority": {"visit_notes": {"margin": 0.1}}},
            "gate.source_non_inferiority.visit_notes.metric: 'acc' is a multiple-choice score",
        ),
        (
            {"mcq": "/x.jsonl"},
            {"non_inferiority": {"margin": 0.1, "metric": "faithfulness"}},
            "gate.non_inferiority.metric",
        ),
        ({"mcq": "/x.jsonl"}, {"floors": {"rougeL@x": 0.1}}, "unknown metric 'rougeL@x'"),
        ({"mcq": "/x.jsonl"}, {"max_drop": {"hallucination_rate": 0.1}}, "use gate.max_increase"),
        (
            {"mcq_sources": [{"name": "a", "data": "/1"}, {"name": "a", "data": "/2"}]},
            {},
            "duplicate names ['a']",
        ),
        (
            {"mcq": "/x", "mcq_sources": [{"name": "mcq", "data": "/1"}]},
            {},
            "the name 'mcq' is taken",
        ),
    ],
)
def test_config_errors_name_the_field(evaluate, gate, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"source": "/m"}, "evaluate": evaluate, "gate": gate})
    assert message in str(err.value)
