"""Paired intervals: coverage on simulated paired data, and exact values by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medprune.gate.stats import (
    clopper_pearson,
    mcnemar_exact_ci,
    mcnemar_exact_p,
    paired_bootstrap_ci,
)


def _simulate(rng, n, p_base, p_flip_down, p_flip_up):
    """Baseline right with p_base; the candidate flips a right answer to wrong with
    p_flip_down and a wrong one to right with p_flip_up. True difference:
    (1 - p_base) * p_flip_up - p_base * p_flip_down."""
    base = rng.random(n) < p_base
    u = rng.random(n)
    cand = np.where(base, u >= p_flip_down, u < p_flip_up)
    return base.tolist(), cand.tolist()


def test_bootstrap_interval_has_the_expected_coverage():
    rng = np.random.default_rng(123)
    p_base, down, up = 0.7, 0.15, 0.2
    truth = (1 - p_base) * up - p_base * down  # -0.045
    trials, covered, widths = 300, 0, []
    for t in range(trials):
        base, cand = _simulate(rng, 200, p_base, down, up)
        ci = paired_bootstrap_ci(base, cand, confidence=0.90, n_resamples=500, seed=t)
        covered += ci.lower <= truth <= ci.upper
        widths.append(ci.upper - ci.lower)
    coverage = covered / trials
    # nominal 0.90; binomial s.e. of the estimate over 300 trials is about 0.017
    assert 0.85 <= coverage <= 0.95, coverage
    assert 0.04 < float(np.mean(widths)) < 0.12


def test_mcnemar_interval_is_conservative():
    rng = np.random.default_rng(7)
    truth = 0.3 * 0.2 - 0.7 * 0.15
    covered = sum(
        (ci := mcnemar_exact_ci(*_simulate(rng, 150, 0.7, 0.15, 0.2), confidence=0.90)).lower
        <= truth
        <= ci.upper
        for _ in range(300)
    )
    assert covered / 300 >= 0.87  # exact intervals cover at least the nominal level (up to noise)


def test_intervals_are_reproducible_and_narrow_with_more_items():
    base = [True] * 70 + [False] * 30
    cand = [True] * 60 + [False] * 10 + [True] * 5 + [False] * 25  # 10 lost, 5 gained
    a = paired_bootstrap_ci(base, cand, seed=1)
    assert a == paired_bootstrap_ci(base, cand, seed=1)
    assert a.difference == pytest.approx(-0.05) and (a.baseline_only, a.candidate_only) == (10, 5)
    big = paired_bootstrap_ci(base * 10, cand * 10, seed=1)
    assert big.upper - big.lower < (a.upper - a.lower) / 2
    assert a.lower < -0.05 < a.upper


def test_clopper_pearson_and_mcnemar_by_hand():
    # k = 0: the upper bound solves (1 - p)^n = alpha/2
    lo, hi = clopper_pearson(0, 10, 0.95)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    lo, hi = clopper_pearson(10, 10, 0.95)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    # exact McNemar: 1 vs 7 discordant, two-sided p = 2 * P(X <= 1 | 8, 1/2) = 2 * 9/256
    assert mcnemar_exact_p(1, 7) == pytest.approx(18 / 256)
    assert mcnemar_exact_p(0, 0) == 1.0
    ci = mcnemar_exact_ci([True, False] * 5, [True, False] * 5)
    assert (ci.lower, ci.upper, ci.difference) == (0.0, 0.0, 0.0)


def test_unpaired_input_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_ci([True], [True, False])
