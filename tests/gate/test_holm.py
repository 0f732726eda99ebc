"""Holm's step-down procedure, the one-sided non-inferiority p-values it orders, and the
dense model's informativeness."""

from __future__ import annotations

import numpy as np
import pytest

from medprune.gate.stats import (
    bootstrap_noninferiority_p,
    holm,
    informative,
    mcnemar_exact_ci,
    mcnemar_noninferiority_p,
    paired_bootstrap_ci,
)


def test_holm_levels_and_adjusted_p_values_by_hand():
    # sorted: b 0.01 (level 0.05/4 = 0.0125: rejected), d 0.015 (0.05/3 = 0.0167: rejected),
    # a 0.03 (0.05/2 = 0.025: not rejected) -> c is not rejected either, though 0.04 < 0.05
    r = holm({"a": 0.03, "b": 0.01, "c": 0.04, "d": 0.015}, 0.05)
    assert r.names == ("a", "b", "c", "d")
    assert r.levels == pytest.approx((0.025, 0.0125, 0.05, 0.05 / 3))
    assert r.rejected == (False, True, False, True)
    assert r.adjusted_p == pytest.approx((0.06, 0.04, 0.06, 0.045))
    assert not r.all_rejected and r.level("c") == 0.05 and r.is_rejected("d")
    # adjusted p <= alpha exactly when rejected
    assert [p <= 0.05 for p in r.adjusted_p] == list(r.rejected)
    d = r.to_dict()
    assert d["alpha"] == 0.05 and d["hypotheses"][1] == {
        "name": "b",
        "p_value": 0.01,
        "level": 0.0125,
        "adjusted_p": pytest.approx(0.04),
        "rejected": True,
    }


def test_one_hypothesis_is_tested_at_alpha_and_bad_input_is_refused():
    assert holm({"only": 0.05}, 0.05).rejected == (True,)
    assert holm({"only": 0.0501}, 0.05).rejected == (False,)
    with pytest.raises(ValueError, match="p-values"):
        holm({"x": 1.5}, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        holm({"x": 0.5}, 0.0)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_holm_holds_the_family_wise_error_by_simulation(m):
    """20,000 families with every null true (uniform p-values; the worst case for a valid
    test): Holm rejects at least one in at most alpha of them (within 3 standard errors),
    while testing each at alpha does not. Mixed with false nulls, the true ones stay held."""
    alpha, reps = 0.05, 20_000
    rng = np.random.default_rng(0)
    se = 3 * (alpha * (1 - alpha) / reps) ** 0.5
    p = rng.uniform(size=(reps, m))
    fwer = np.mean(
        [any(holm({str(k): float(row[k]) for k in range(m)}, alpha).rejected) for row in p]
    )
    naive = np.mean((p <= alpha).any(axis=1))
    assert fwer <= alpha + se
    assert naive > alpha + se
    # the first source is false (tiny p-values); the rest true: no true one rejected > alpha
    p[:, 0] = rng.uniform(0, 1e-4, size=reps)
    wrong = np.mean(
        [any(holm({str(k): float(row[k]) for k in range(m)}, alpha).rejected[1:]) for row in p]
    )
    assert wrong <= alpha + se


@pytest.mark.parametrize("n", [40, 120])
@pytest.mark.parametrize("margin", [0.05, 0.1])
def test_mcnemar_p_value_is_the_dual_of_the_interval(n, margin):
    """For every outcome: p < a exactly when the exact interval at 1 - 2a lies above -margin."""
    for a in (0.05, 0.0125):
        for n_d in range(0, n + 1, 7):
            for c in range(n_d + 1):
                base = [True] * (n_d - c) + [False] * c + [True] * (n - n_d)
                cand = [False] * (n_d - c) + [True] * c + [True] * (n - n_d)
                ci = mcnemar_exact_ci(base, cand, confidence=1 - 2 * a)
                p = mcnemar_noninferiority_p(n_d - c, c, n, margin)
                if abs(ci.lower + margin) > 1e-9:
                    assert (ci.lower > -margin) == (p < a), (n_d, c, a, p, ci.lower)


def test_bootstrap_p_value_agrees_with_the_percentile_interval():
    rng = np.random.default_rng(1)
    base = list(rng.uniform(size=200) < 0.6)
    cand = [b if rng.uniform() < 0.9 else not b for b in base]
    for margin in (0.01, 0.03, 0.05, 0.08):
        p = bootstrap_noninferiority_p(base, cand, margin, n_resamples=2000, seed=0)
        for a in (0.025, 0.05, 0.1):
            ci = paired_bootstrap_ci(base, cand, confidence=1 - 2 * a, n_resamples=2000, seed=0)
            if abs(ci.lower + margin) > 0.005:
                assert (ci.lower > -margin) == (p < a)


def test_informativeness_against_chance_and_majority():
    # 4-option items, answers spread: chance 0.25; dense 60/100 is clearly above it
    spread = [k % 4 for k in range(100)]
    good = informative([k < 60 for k in range(100)], [4] * 100, spread, 0.05)
    assert good.informative and good.baseline_kind == "chance" and good.baseline_rate == 0.25
    # dense 0.30 on 100 items: its lower bound (about 0.22) crosses chance
    near = informative([k < 30 for k in range(100)], [4] * 100, spread, 0.05)
    assert not near.informative and near.lower < 0.25 < near.accuracy
    # PubMedQA-style: 3 labels, 75% "no": dense at 0.70 is below always-"no"
    labels = [1] * 75 + [0] * 25
    yn = informative([k < 70 for k in range(100)], [3] * 100, labels, 0.05)
    assert not yn.informative and yn.baseline_kind == "majority" and yn.baseline_rate == 0.75
    assert yn.to_dict()["informative"] is False
