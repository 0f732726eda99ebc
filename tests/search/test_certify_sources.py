"""The search's certification over every source: fixed sequence over candidates, Holm
across sources within each candidate's test, and what each source alone could certify."""

from __future__ import annotations

from medprune.config import GateConfig
from medprune.gate.decision import decide
from medprune.search.certify import certify_sequence, passes_alone, smallest_per_source


def _preds(correct: list[bool]) -> list[dict]:
    return [
        {"id": f"q{k}", "answer": k % 4, "options": ["a", "b", "c", "d"], "correct": c}
        for k, c in enumerate(correct)
    ]


def _cand(n: int, right: int, lost: int) -> list[dict]:
    return _preds([k < right and k >= lost for k in range(n)])


N, RIGHT = 300, 210  # the dense model: 0.70 on 4-option items (informative)
DENSE = _preds([k < RIGHT for k in range(N)])
GATE = GateConfig(
    non_inferiority={"margin": 0.1, "confidence": 0.9, "method": "mcnemar"},
    source_non_inferiority={"wordnet-medical": {"margin": 0.1, "method": "mcnemar"}},
)
# candidates least to most compressed: what each loses on the built-in set and on WordNet
LOSSES = {"w10": (3, 5), "w25": (6, 60), "w40": (9, 100)}


def _test(cid: str):
    builtin_lost, wordnet_lost = LOSSES[cid]
    return decide(
        {"complete": True},
        {"complete": True},
        GATE,
        baseline_predictions=DENSE,
        candidate_predictions=_cand(N, RIGHT, builtin_lost),
        baseline_sources={"wordnet-medical": DENSE},
        candidate_sources={"wordnet-medical": _cand(N, RIGHT, wordnet_lost)},
        independent={"mcq": False, "wordnet-medical": True},
        require_independent=True,
    )


def test_a_candidate_that_passes_the_built_in_set_but_fails_an_independent_source_is_not_certified():
    order = list(LOSSES)
    index, decisions = certify_sequence(order, _test)
    # w25 keeps the built-in set (6 lost of 300) but loses 0.20 on WordNet: the sequence stops
    assert order[index] == "w10" and set(decisions) == {"w10", "w25"}
    w25 = {v.name: v for v in decisions["w25"].sources}
    assert w25["mcq"].status == "passed" and w25["wordnet-medical"].status == "failed"
    assert not decisions["w25"].passed


def test_each_source_alone_names_the_smallest_step_it_could_certify():
    order = list(LOSSES)
    decisions = {cid: _test(cid) for cid in order}
    alone = smallest_per_source(order, decisions, 0.05)
    assert alone == {"mcq": "w40", "wordnet-medical": "w10"}
    assert passes_alone(decisions["w40"], "mcq", 0.05)
    assert not passes_alone(decisions["w25"], "wordnet-medical", 0.05)
    # a source missing from a decision, or a candidate never decided, stops its sequence
    assert smallest_per_source(["w10", "w25"], {"w10": decisions["w10"]}, 0.05) == {
        "mcq": "w10",
        "wordnet-medical": "w10",
    }


def test_evidence_only_from_the_built_in_set_certifies_nothing_in_a_search():
    only_builtin = GateConfig(
        non_inferiority={"margin": 0.1, "confidence": 0.9, "method": "mcnemar"}
    )
    d = decide(
        {"complete": True},
        {"complete": True},
        only_builtin,
        baseline_predictions=DENSE,
        candidate_predictions=_cand(N, RIGHT, 0),
        independent={"mcq": False},
        require_independent=True,
    )
    assert not d.passed and d.sources[0].status == "passed"
    assert d.reasons == [
        "nothing can be certified: no informative source independent of the recovery data "
        "(mcq: passed, not independent)"
    ]
