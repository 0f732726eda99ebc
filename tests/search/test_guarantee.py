"""The search's guarantee, by simulation: fixed-sequence certification with the exact
McNemar non-inferiority test certifies a candidate that is really worse than the margin in
at most alpha of many synthetic searches, and finds the right candidate when the signal is
clear. The vectorised test used for simulation is checked against the gate's own code."""

from __future__ import annotations

import numpy as np
import pytest

from medprune.config import GateConfig, NonInferiorityConfig
from medprune.gate.decision import decide
from medprune.gate.stats import (
    confidence_for_alpha,
    fixed_sequence,
    mcnemar_exact_ci,
    mcnemar_noninferiority_table,
    noninferiority_sample_size,
)
from medprune.search.certify import certify_sequence

MARGIN, ALPHA = 0.10, 0.05


def _simulate(rng, n_items, diffs, discordance, searches):
    """Discordant counts (b: only the dense model right, c: only the candidate right) of
    each candidate in each synthetic search; E[(c - b) / n] = the candidate's true difference."""
    diffs = np.asarray(diffs)
    up, down = (discordance + diffs) / 2, (discordance - diffs) / 2
    assert (up >= 0).all() and (down >= 0).all()
    b = np.empty((searches, len(diffs)), dtype=int)
    c = np.empty_like(b)
    for k in range(len(diffs)):
        counts = rng.multinomial(n_items, [down[k], up[k], 1 - down[k] - up[k]], size=searches)
        b[:, k], c[:, k] = counts[:, 0], counts[:, 1]
    return b, c


def _certify(table, b, c):
    passes = table[b + c, c]
    return fixed_sequence(passes), passes


def test_vectorised_test_equals_the_gates_exact_interval():
    n = 50
    table = mcnemar_noninferiority_table(n, MARGIN, ALPHA)
    for n_d in range(n + 1):
        for c in range(n_d + 1):
            b = n_d - c
            base = [True] * b + [False] * c + [True] * (n - n_d)
            cand = [False] * b + [True] * c + [True] * (n - n_d)
            ci = mcnemar_exact_ci(base, cand, confidence=confidence_for_alpha(ALPHA))
            assert table[n_d, c] == (ci.lower > -MARGIN + 1e-12), (n_d, c, ci.lower)


def test_fixed_sequence_stops_at_the_first_failure():
    assert fixed_sequence([True, True, False, True]) == 1
    assert fixed_sequence([False, True]) == -1
    assert fixed_sequence([]) == -1
    assert list(fixed_sequence(np.array([[True, True], [True, False], [False, False]]))) == [
        1,
        0,
        -1,
    ]


@pytest.mark.parametrize(
    "diffs",
    [
        [-0.10, -0.10, -0.10, -0.10, -0.10],  # every candidate exactly at the margin (bad)
        [0.0, -0.03, -0.06, -0.10, -0.12, -0.20],  # good ones first, then just outside
        [-0.02, -0.09, -0.101, -0.105, -0.11],  # just inside, then just outside
    ],
)
def test_a_bad_candidate_is_certified_at_most_alpha_of_the_time(diffs):
    rng = np.random.default_rng(7)
    n_items, searches = 300, 20_000
    table = mcnemar_noninferiority_table(n_items, MARGIN, ALPHA)
    b, c = _simulate(rng, n_items, diffs, discordance=0.25, searches=searches)
    chosen, passes = _certify(table, b, c)
    truth = np.asarray(diffs)
    bad = truth <= -MARGIN + 1e-12  # really worse than (or at) the margin: H0 true
    certified_bad = (chosen >= 0) & bad[np.maximum(chosen, 0)]
    rate = certified_bad.mean()
    se = np.sqrt(ALPHA * (1 - ALPHA) / searches)
    assert rate <= ALPHA + 3 * se, rate
    # testing every candidate and keeping the most compressed that passes has no such
    # guarantee: with several bad candidates at the margin it certifies one far more often
    if bad.sum() >= 3:
        most = np.where(
            passes.any(axis=1), passes.shape[1] - 1 - np.argmax(passes[:, ::-1], axis=1), -1
        )
        naive_bad = ((most >= 0) & bad[np.maximum(most, 0)]).mean()
        assert naive_bad > ALPHA + 3 * se, naive_bad


def test_the_right_candidate_is_found_when_the_signal_is_clear():
    rng = np.random.default_rng(11)
    n_items, searches = 1000, 5_000
    diffs = [0.0, 0.0, -0.01, -0.30]  # the third is the answer; the fourth is far outside
    table = mcnemar_noninferiority_table(n_items, MARGIN, ALPHA)
    b, c = _simulate(rng, n_items, diffs, discordance=0.4, searches=searches)
    chosen, _ = _certify(table, b, c)
    assert (chosen == 3).mean() == 0.0
    assert (chosen == 2).mean() > 0.95


def test_sample_size_gives_about_the_promised_power():
    size = noninferiority_sample_size(MARGIN, ALPHA, 0.8, 0.2)
    assert 110 <= size.needed <= 140  # (1.645 + 0.842)^2 * 0.2 / 0.1^2 = 123.7
    rng = np.random.default_rng(3)
    table = mcnemar_noninferiority_table(size.needed, MARGIN, ALPHA)
    b, c = _simulate(rng, size.needed, [0.0], discordance=0.2, searches=20_000)
    power = table[b + c, c][:, 0].mean()
    assert 0.7 <= power <= 0.9, power  # the exact test is a little conservative
    assert noninferiority_sample_size(MARGIN, ALPHA, 0.8, 0.2, available=100).enough is False
    assert (
        "needs about"
        in noninferiority_sample_size(MARGIN, ALPHA, 0.8, 0.2, available=100).message()
    )
    with pytest.raises(ValueError, match="beyond the margin"):
        noninferiority_sample_size(MARGIN, ALPHA, 0.8, 0.2, expected_difference=-0.2)


def test_certify_sequence_with_the_real_gate_matches_the_simulated_rule():
    """The product's certification (decide() on per-item predictions, in sequence) makes the
    same choice as the vectorised rule the simulation uses."""
    rng = np.random.default_rng(5)
    n_items = 120
    table = mcnemar_noninferiority_table(n_items, MARGIN, ALPHA)
    gate = GateConfig(
        non_inferiority=NonInferiorityConfig(
            margin=MARGIN, confidence=confidence_for_alpha(ALPHA), method="mcnemar", min_items=1
        )
    )
    for _ in range(15):
        b, c = _simulate(rng, n_items, [0.0, -0.05, -0.1, -0.15], discordance=0.3, searches=1)
        expected, _ = _certify(table, b, c)
        base_preds = [{"id": str(i), "correct": True} for i in range(n_items)]

        def test(k: str, b=b, c=c):
            bk, ck = int(b[0, int(k)]), int(c[0, int(k)])
            base = [{"id": str(i), "correct": i >= ck} for i in range(n_items)]
            cand = [{"id": str(i), "correct": (i < ck) or (i >= ck + bk)} for i in range(n_items)]
            return decide(
                {"complete": True},
                {"complete": True},
                gate,
                baseline_predictions=base,
                candidate_predictions=cand,
            )

        index, decisions = certify_sequence(["0", "1", "2", "3"], test)
        assert index == int(expected[0])
        assert len(decisions) == min(4, index + 2)  # stopped right after the first failure
        del base_preds
