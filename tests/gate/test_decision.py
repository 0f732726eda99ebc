"""Gate decisions at and around every threshold, critical items and non-inferiority."""

from __future__ import annotations

import pytest

from medprune.config import GateConfig
from medprune.errors import ConfigError
from medprune.gate.decision import GateDecision, decide


def results(acc=0.8, ppl=10.0, rouge=0.5, latency=100.0, cats=None, complete=True, settings=None):
    cats = cats or {"dosing": 0.9, "contraindications": 0.7}
    return {
        "complete": complete,
        "settings": settings or {"seq_len": 512, "data_sha256": {"mcq": "abc"}},
        "mcq": {
            "acc": acc,
            "acc_norm": acc,
            "n": 100,
            "per_category": {c: {"acc": a, "acc_norm": a, "n": 50} for c, a in cats.items()},
        },
        "perplexity": {
            "perplexity": ppl,
            "nll": 2.3,
            "tokens": 1000,
            "texts": 10,
            "bits_per_byte": 1.1,
        },
        "generation": {
            "rouge_l": rouge,
            "exact_match": 0.1,
            "n": 20,
            "max_new_tokens": 32,
            "per_category": {},
        },
        "efficiency": {
            "total_params": 1000,
            "nonzero_params": 500,
            "size_bytes": 4000,
            "latency_ms_p50": latency * 0.9,
            "latency_ms_p95": latency,
            "tokens_per_s": 50.0,
            "peak_memory_bytes": 10**9,
        },
    }


def preds(correct: list[bool], ids=None) -> list[dict]:
    """Per-item lines of 4-option items whose answers are spread over the positions (so
    neither chance nor always-the-same-answer is above 0.25)."""
    ids = ids or [f"q{i}" for i in range(len(correct))]
    return [
        {
            "id": i,
            "category": "c",
            "answer": k % 4,
            "pred": k % 4 if c else (k + 1) % 4,
            "correct": c,
            "correct_norm": c,
            "loglikelihoods": [-1.0, -2.0, -3.0, -4.0],
            "options": ["a", "b", "c", "d"],
        }
        for k, (i, c) in enumerate(zip(ids, correct, strict=True))
    ]


def check(decision: GateDecision, name: str):
    [c] = [c for c in decision.checks if c.name == name]
    return c


@pytest.mark.parametrize(
    ("gate", "candidate", "name", "passes"),
    [
        # legacy fields: at the threshold passes, just beyond fails
        ({"min_accuracy": 0.7}, {"acc": 0.7}, "min_accuracy", True),
        ({"min_accuracy": 0.7}, {"acc": 0.6999}, "min_accuracy", False),
        ({"max_accuracy_drop": 0.05}, {"acc": 0.75}, "max_accuracy_drop", True),
        ({"max_accuracy_drop": 0.05}, {"acc": 0.7499}, "max_accuracy_drop", False),
        ({"max_perplexity_ratio": 1.5}, {"ppl": 15.0}, "max_perplexity_ratio", True),
        ({"max_perplexity_ratio": 1.5}, {"ppl": 15.01}, "max_perplexity_ratio", False),
        # floors and ceilings per metric
        ({"floors": {"rouge_l": 0.4}}, {"rouge": 0.4}, "floor_rouge_l", True),
        ({"floors": {"rouge_l": 0.4}}, {"rouge": 0.3999}, "floor_rouge_l", False),
        ({"floors": {"accuracy": 0.8}}, {"acc": 0.8}, "floor_accuracy", True),
        ({"ceilings": {"perplexity": 12}}, {"ppl": 12.0}, "ceiling_perplexity", True),
        ({"ceilings": {"perplexity": 12}}, {"ppl": 12.001}, "ceiling_perplexity", False),
        ({"ceilings": {"latency_ms_p95": 150}}, {"latency": 150.0}, "ceiling_latency_ms_p95", True),
        (
            {"ceilings": {"latency_ms_p95": 150}},
            {"latency": 151.0},
            "ceiling_latency_ms_p95",
            False,
        ),
        # drops vs the baseline (baseline: rouge 0.5, ppl 10)
        ({"max_drop": {"rouge_l": 0.1}}, {"rouge": 0.4}, "max_drop_rouge_l", True),
        ({"max_drop": {"rouge_l": 0.1}}, {"rouge": 0.3999}, "max_drop_rouge_l", False),
        ({"max_increase": {"perplexity": 2}}, {"ppl": 12.0}, "max_increase_perplexity", True),
        ({"max_increase": {"perplexity": 2}}, {"ppl": 12.01}, "max_increase_perplexity", False),
        # category floors (candidate dosing accuracy)
        (
            {"category_floors": {"dosing": 0.85}},
            {"cats": {"dosing": 0.85, "contraindications": 0.1}},
            "category_floor_dosing",
            True,
        ),
        (
            {"category_floors": {"dosing": 0.85}},
            {"cats": {"dosing": 0.84, "contraindications": 0.9}},
            "category_floor_dosing",
            False,
        ),
        (
            {"category_floors": {"*": 0.5}},
            {"cats": {"dosing": 0.9, "contraindications": 0.49}},
            "category_floor_contraindications",
            False,
        ),
        (
            {"category_floors": {"oncology": 0.5}},
            {},
            "category_floor_oncology",
            False,
        ),  # not measured
    ],
)
def test_threshold_boundaries(gate, candidate, name, passes):
    d = decide(results(), results(**candidate), GateConfig(**gate))
    c = check(d, name)
    assert c.passed is passes and d.passed is passes
    if not passes:
        assert any(name in r for r in d.reasons)
    [value] = gate.values()
    assert c.threshold == (value if not isinstance(value, dict) else next(iter(value.values())))


def test_every_check_reports_metric_value_threshold_and_outcome():
    d = decide(
        results(), results(acc=0.6), GateConfig(min_accuracy=0.7, ceilings={"perplexity": 20})
    )
    by = {c.name: c for c in d.checks}
    assert (
        by["min_accuracy"].value == 0.6
        and by["min_accuracy"].threshold == 0.7
        and by["min_accuracy"].comparison == ">="
    )
    assert by["ceiling_perplexity"].passed and by["ceiling_perplexity"].value == 10.0
    assert by["baseline_complete"].passed and by["same_evaluation"].passed
    assert d.reasons == ["candidate accuracy = 0.6, needs >= 0.7 (min_accuracy): FAILED"]
    assert GateDecision.from_dict(d.to_dict()) == d


def test_incomplete_or_mismatched_evaluations_never_pass():
    d = decide(results(), results(complete=False), GateConfig())
    assert not d.passed and "candidate evaluation did not complete" in d.reasons
    assert not decide({"complete": False}, results(), GateConfig(min_accuracy=0.0)).passed
    other = results(settings={"seq_len": 256, "data_sha256": {"mcq": "abc"}})
    d = decide(results(), other, GateConfig())
    assert not d.passed and "differ in ['seq_len']" in check(d, "same_evaluation").message


def test_critical_items():
    cfg = GateConfig(critical_items=["q1", "q3"])
    base = preds([True, True, False, True])
    # q3 regressed (right -> wrong); q2 is not critical and q1 stays right
    d = decide(
        results(),
        results(),
        cfg,
        baseline_predictions=base,
        candidate_predictions=preds([True, True, False, False]),
    )
    c = check(d, "critical_items")
    assert not d.passed and c.value == 1 and c.details["regressed"] == ["q3"]
    assert "['q3']" in c.message
    # a critical item the baseline also got wrong may stay wrong; others may regress
    ok = decide(
        results(),
        results(),
        GateConfig(critical_items=["q2"]),
        baseline_predictions=base,
        candidate_predictions=preds([False, True, False, False]),
    )
    assert ok.passed and check(ok, "critical_items").value == 0
    # a critical id that was never evaluated, or no predictions at all, fails
    missing = decide(
        results(),
        results(),
        GateConfig(critical_items=["nope"]),
        baseline_predictions=base,
        candidate_predictions=base,
    )
    assert (
        not missing.passed and "not evaluated: ['nope']" in check(missing, "critical_items").message
    )
    no_preds = decide(results(), results(), cfg)
    assert (
        not no_preds.passed
        and "no per-item predictions for baseline and candidate" in no_preds.reasons[0]
    )


def _paired_sets(n_items: int, lost: int, gained: int):
    base = [True] * (n_items // 2) + [False] * (n_items - n_items // 2)
    cand = list(base)
    for i in range(lost):
        cand[i] = False
    for i in range(gained):
        cand[n_items // 2 + i] = True
    return preds(base), preds(cand)


@pytest.mark.parametrize("method", ["bootstrap", "mcnemar"])
def test_non_inferiority(method):
    ni = {"margin": 0.05, "confidence": 0.95, "method": method, "n_resamples": 1000, "seed": 0}
    # 400 items, 4 lost and 4 gained: difference 0, interval well inside the margin
    base, cand = _paired_sets(400, 4, 4)
    d = decide(
        results(),
        results(),
        GateConfig(non_inferiority=ni),
        baseline_predictions=base,
        candidate_predictions=cand,
    )
    c = check(d, "non_inferiority")
    assert (
        d.passed
        and c.value > -0.05
        and d.interval["difference"] == 0
        and d.interval["method"] == method
    )
    assert d.interval["lower"] < 0 < d.interval["upper"]
    # 40 lost, 0 gained: the candidate is worse by 0.10; non-inferiority is not shown
    base, cand = _paired_sets(400, 40, 0)
    d = decide(
        results(),
        results(),
        GateConfig(non_inferiority=ni),
        baseline_predictions=base,
        candidate_predictions=cand,
    )
    assert not d.passed and check(d, "non_inferiority").value < -0.05
    assert "non-inferiority NOT shown" in d.reasons[0]


def test_non_inferiority_with_few_items_says_the_interval_is_too_wide():
    base, cand = _paired_sets(20, 0, 0)  # identical answers, but only 20 items
    cfg = GateConfig(non_inferiority={"margin": 0.05, "min_items": 30})
    d = decide(results(), results(), cfg, baseline_predictions=base, candidate_predictions=cand)
    assert not d.passed and "only 20 items (< min_items 30)" in d.reasons[0]
    cfg = GateConfig(non_inferiority={"margin": 0.05, "min_items": 10})
    assert decide(
        results(), results(), cfg, baseline_predictions=base, candidate_predictions=cand
    ).passed


def test_items_must_match_between_baseline_and_candidate():
    cfg = GateConfig(non_inferiority={"margin": 0.05, "min_items": 1})
    d = decide(
        results(),
        results(),
        cfg,
        baseline_predictions=preds([True, True]),
        candidate_predictions=preds([True, True], ids=["q0", "x"]),
    )
    assert not d.passed and "different items" in d.reasons[0]


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"floors": {"acuracy": 0.5}}, "unknown metric 'acuracy'"),
        ({"max_drop": {"perplexity": 1}}, "use gate.max_increase"),
        ({"max_increase": {"accuracy": 0.1}}, "use gate.max_drop"),
        ({"category_floors": {"dosing": 1.5}}, "gate.category_floors.dosing: must be in [0, 1]"),
        ({"critical_items": ["a", "a"]}, "duplicate ids ['a']"),
        ({"non_inferiority": {"margin": 0.05, "method": "wald"}}, "non_inferiority.method"),
        ({"non_inferiority": {"margin": 0}}, "non_inferiority.margin"),
    ],
)
def test_config_validators_name_the_field(gate, message):
    from medprune.config import parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"source": "/m"}, "evaluate": {"mcq": "/x.jsonl"}, "gate": gate})
    assert message in str(err.value) and "gate." in str(err.value)
