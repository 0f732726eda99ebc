"""Confidence intervals for the paired difference in accuracy (candidate - baseline).

Both models answer the same items, so the comparison is paired: what matters is the items
where they disagree. Two intervals are offered:

* :func:`paired_bootstrap_ci`: resample items with replacement (fixed seed) and take the
  percentile interval of the mean difference;
* :func:`mcnemar_exact_ci`: the exact conditional interval behind McNemar's test. Given the
  ``n_d`` discordant items, the number the candidate got right and the baseline wrong is
  binomial; a Clopper-Pearson interval for that proportion ``p`` maps to the difference
  ``(2p - 1) * n_d / n``. It is conservative (coverage at least the nominal level).

Non-inferiority (as in clinical trials, CONSORT): the candidate is "not worse" when the
lower bound of the two-sided interval is above ``-margin``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PairedInterval:
    method: str
    confidence: float
    n: int  # paired items
    difference: float  # candidate - baseline accuracy
    lower: float
    upper: float
    baseline_only: int  # items only the baseline got right
    candidate_only: int  # items only the candidate got right
    p_value: float | None = None  # exact McNemar two-sided p-value (mcnemar only)

    def to_dict(self) -> dict:
        return asdict(self)


def _discordant(baseline: Sequence[bool], candidate: Sequence[bool]) -> tuple[int, int, int]:
    if len(baseline) != len(candidate):
        raise ValueError(f"paired results differ in length: {len(baseline)} vs {len(candidate)}")
    if not baseline:
        raise ValueError("no paired items")
    b = sum(1 for x, y in zip(baseline, candidate, strict=True) if x and not y)
    c = sum(1 for x, y in zip(baseline, candidate, strict=True) if y and not x)
    return len(baseline), b, c


def _bootstrap_means(diff: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement, fixed seed) of ``diff``."""
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)  # bound memory: chunk x n indices at a time
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    return means


def paired_bootstrap_ci(
    baseline: Sequence[bool],
    candidate: Sequence[bool],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedInterval:
    """Percentile bootstrap interval for mean(candidate) - mean(baseline) over paired items."""
    n, b, c = _discordant(baseline, candidate)
    diff = np.asarray(candidate, dtype=np.int8) - np.asarray(baseline, dtype=np.int8)
    means = _bootstrap_means(diff, n_resamples, seed)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedInterval("bootstrap", confidence, n, (c - b) / n, float(lower), float(upper), b, c)


def paired_bootstrap_mean_ci(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedInterval:
    """Percentile bootstrap interval for the mean paired difference of a per-item score in
    [0, 1] (a note's ROUGE or faithfulness); ``baseline_only`` / ``candidate_only`` count
    the items where that model scored higher."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired results differ in length: {len(baseline)} vs {len(candidate)}")
    if not baseline:
        raise ValueError("no paired items")
    base = np.asarray(baseline, dtype=np.float64)
    diff = np.asarray(candidate, dtype=np.float64) - base
    n = len(diff)
    means = _bootstrap_means(diff, n_resamples, seed)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedInterval(
        "bootstrap",
        confidence,
        n,
        float(diff.mean()),
        float(lower),
        float(upper),
        int((diff < 0).sum()),
        int((diff > 0).sum()),
    )


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def _bisect(f, lo: float, hi: float, iters: int = 80) -> float:
    """Root of a decreasing-in-p function ``f`` (f(lo) > 0 > f(hi)) by bisection."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion with ``k`` successes in ``n``."""
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    # lower: P(X >= k | p) = alpha/2  <=>  1 - cdf(k-1, p) = alpha/2
    lower = (
        0.0 if k == 0 else _bisect(lambda p: alpha / 2 - (1 - _binom_cdf(k - 1, n, p)), 0.0, 1.0)
    )
    # upper: P(X <= k | p) = alpha/2
    upper = 1.0 if k == n else _bisect(lambda p: _binom_cdf(k, n, p) - alpha / 2, 0.0, 1.0)
    return lower, upper


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of ``c`` out of ``b + c`` at 1/2."""
    n_d = b + c
    if n_d == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_cdf(min(b, c), n_d, 0.5))


def mcnemar_exact_ci(
    baseline: Sequence[bool], candidate: Sequence[bool], *, confidence: float = 0.95
) -> PairedInterval:
    """Exact conditional (McNemar / Clopper-Pearson) interval for the paired difference."""
    n, b, c = _discordant(baseline, candidate)
    n_d = b + c
    if n_d == 0:
        lower = upper = 0.0
    else:
        p_lo, p_hi = clopper_pearson(c, n_d, confidence)
        lower, upper = (2 * p_lo - 1) * n_d / n, (2 * p_hi - 1) * n_d / n
    return PairedInterval(
        "mcnemar", confidence, n, (c - b) / n, lower, upper, b, c, mcnemar_exact_p(b, c)
    )


# --------------------------------------------------------------------------------------
# Search: certification by fixed-sequence testing, and how many items it needs
# --------------------------------------------------------------------------------------
#
# ``medprune search`` ranks candidates on one part of the items and certifies on another.
# Certification is fixed-sequence testing (Learn-then-Test, Angelopoulos et al. 2021): the
# candidates are ordered before the certification items are looked at (least to most
# compressed), each is tested in turn at level alpha, and testing stops at the first failure.
# Because a candidate is only tested if every earlier one passed, the chance of certifying
# any candidate that is really worse than the margin is at most alpha, with no correction
# for the number of candidates. A level-alpha one-sided test is the lower bound of a
# two-sided interval at confidence 1 - 2 alpha lying above -margin.


def confidence_for_alpha(alpha: float) -> float:
    """Two-sided confidence whose lower bound is a one-sided test at level ``alpha``."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    return 1.0 - 2.0 * alpha


def fixed_sequence(passes: Sequence[bool] | np.ndarray) -> np.ndarray | int:
    """Index of the last candidate certified by fixed-sequence testing, or -1 for none.

    ``passes[..., k]`` says whether the k-th candidate in the pre-set order passed its own
    test; testing stops at the first failure, so the answer is the number of leading passes
    minus one. Works on a batch (any leading dimensions) for simulation.
    """
    arr = np.asarray(passes, dtype=bool)
    if arr.shape[-1] == 0:
        out = np.full(arr.shape[:-1], -1)
    else:
        leading = np.cumprod(arr, axis=-1).sum(axis=-1)  # passes before the first failure
        out = leading - 1
    return int(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class SampleSize:
    """Paired items needed to show non-inferiority (see :func:`noninferiority_sample_size`)."""

    needed: int
    available: int | None
    margin: float
    alpha: float
    power: float
    discordance: float
    expected_difference: float

    @property
    def enough(self) -> bool:
        return self.available is None or self.available >= self.needed

    def message(self) -> str:
        have = "" if self.available is None else f"; the certification set has {self.available}"
        return (
            f"showing non-inferiority at margin {self.margin:g} with alpha {self.alpha:g} and power "
            f"{self.power:g} needs about {self.needed} paired items at a discordance rate of "
            f"{self.discordance:.3f} (expected difference {self.expected_difference:+.3f}){have}"
        )

    def to_dict(self) -> dict:
        return dict(asdict(self), enough=self.enough)


def noninferiority_sample_size(
    margin: float,
    alpha: float,
    power: float,
    discordance: float,
    *,
    expected_difference: float = 0.0,
    available: int | None = None,
) -> SampleSize:
    """Paired items needed for a level-``alpha`` one-sided non-inferiority test at ``margin``
    to pass with probability ``power``, when a share ``discordance`` of items is answered
    differently by the two models and the true difference (candidate - baseline) is
    ``expected_difference`` (the normal approximation to McNemar's test, as in Connor 1987):

        n = (z_{1-alpha} + z_{power})^2 * (discordance - d^2) / (margin + d)^2
    """
    from statistics import NormalDist

    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    if not 0 < alpha < 0.5 or not 0.5 <= power < 1:
        raise ValueError(
            f"need 0 < alpha < 0.5 and 0.5 <= power < 1, got alpha={alpha}, power={power}"
        )
    if not 0 <= discordance <= 1:
        raise ValueError(f"discordance must be in [0, 1], got {discordance}")
    d = expected_difference
    if margin + d <= 0:
        raise ValueError(
            f"expected difference {d:+g} is beyond the margin {margin:g}: no sample size shows non-inferiority"
        )
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    variance = max(discordance - d * d, 1e-9)
    needed = math.ceil(z * z * variance / (margin + d) ** 2)
    return SampleSize(max(needed, 1), available, margin, alpha, power, discordance, d)


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def mcnemar_noninferiority_table(n: int, margin: float, alpha: float) -> np.ndarray:
    """``table[n_d, c]``: whether the exact McNemar interval at confidence ``1 - 2 alpha``
    has its lower bound above ``-margin`` when ``n_d`` of ``n`` paired items are discordant
    and the candidate got ``c`` of them right: :func:`mcnemar_exact_ci` for every outcome
    at once, for simulation.

    By the duality of the Clopper-Pearson interval, the lower bound for ``p`` exceeds ``p0``
    exactly when ``P(X >= c | n_d, p0) < alpha``; the lower bound of the difference,
    ``(2 p - 1) n_d / n``, exceeds ``-margin`` when that of ``p`` exceeds
    ``p0 = (1 - margin n / n_d) / 2``.
    """
    logf = _log_factorials(n)
    table = np.zeros((n + 1, n + 1), dtype=bool)
    table[0, 0] = True  # no discordant items: the interval is [0, 0]
    for n_d in range(1, n + 1):
        p0 = (1.0 - margin * n / n_d) / 2.0
        ks = np.arange(n_d + 1)
        if p0 <= 0:
            # any p > 0 beats p0; the lower bound of p is 0 only when c = 0, and then the
            # difference's lower bound is -n_d/n, above -margin iff n_d < margin * n
            table[n_d, : n_d + 1] = True
            table[n_d, 0] = n_d / n < margin
            continue
        logpmf = (
            logf[n_d] - logf[ks] - logf[n_d - ks] + ks * math.log(p0) + (n_d - ks) * math.log1p(-p0)
        )
        pmf = np.exp(logpmf - logpmf.max())
        pmf /= pmf.sum()
        survival = np.cumsum(pmf[::-1])[::-1]  # P(X >= c)
        table[n_d, : n_d + 1] = survival < alpha
    return table


# --------------------------------------------------------------------------------------
# Several sources: one-sided non-inferiority p-values and Holm's step-down procedure
# --------------------------------------------------------------------------------------
#
# A candidate is certified only if it is non-inferior on every clinical source (the built-in
# MCQ set, each evaluate.mcq_sources entry, visit notes), and each source's verdict is
# reported on its own. Testing m sources each at level alpha would let the chance of at
# least one false "non-inferior on source X" grow towards m * alpha. Holm (1979) holds that
# family-wise error at alpha for any dependence between the sources (they are scored on the
# same model, so they are not independent), is uniformly more powerful than Bonferroni, and
# needs only the sources' p-values: sort them, test the smallest at alpha / m, the next at
# alpha / (m - 1), ..., and stop at the first that fails. Each source's interval is then
# shown at the confidence its Holm level gives (1 - 2 * level, two-sided).
#
# With the search's fixed-sequence testing over candidates: the candidates are tested in a
# fixed order, and each candidate's test is "Holm rejects every source's null". That test
# has level alpha for the candidate's null "inferior on at least one source" (its rejection
# implies the true-null source was rejected, which Holm keeps below alpha), so the sequence
# over candidates still certifies a bad candidate with probability at most alpha, and every
# per-source statement about a tested candidate holds family-wise at alpha.


def mcnemar_noninferiority_p(
    baseline_only: int, candidate_only: int, n: int, margin: float
) -> float:
    """One-sided exact p-value of H0: candidate - baseline <= -margin, from the discordant
    counts of ``n`` paired items: ``P(X >= candidate_only)`` for ``X ~ Binomial(n_d, p0)``,
    ``p0 = (1 - margin n / n_d) / 2`` (the dual of :func:`mcnemar_exact_ci`: its lower bound
    at confidence ``1 - 2 a`` lies above ``-margin`` exactly when this p-value is below
    ``a``; see :func:`mcnemar_noninferiority_table`)."""
    n_d = baseline_only + candidate_only
    if n_d == 0:
        return 0.0  # both models agree on every item: the interval is [0, 0]
    p0 = (1.0 - margin * n / n_d) / 2.0
    if p0 <= 0:
        return 0.0 if candidate_only > 0 or n_d / n < margin else 1.0
    return 1.0 - _binom_cdf(candidate_only - 1, n_d, p0)


def bootstrap_noninferiority_p(
    baseline: Sequence[float],
    candidate: Sequence[float],
    margin: float,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> float:
    """One-sided bootstrap p-value of H0: mean(candidate - baseline) <= -margin: the share
    of resampled mean differences at or below ``-margin`` (the same resamples, seed and
    order as :func:`paired_bootstrap_ci`, so its percentile lower bound at ``1 - 2 a`` lies
    above ``-margin`` when this p-value is below ``a``)."""
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("need equally many paired items, at least one")
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    means = _bootstrap_means(diff, n_resamples, seed)
    return float(np.mean(means <= -margin))


@dataclass(frozen=True)
class HolmResult:
    """Holm's step-down procedure over named hypotheses (see :func:`holm`)."""

    alpha: float
    names: tuple[str, ...]  # in the order given
    p_values: tuple[float, ...]
    levels: tuple[
        float, ...
    ]  # the level each was (or would have been) tested at: alpha / (m - rank)
    adjusted_p: tuple[float, ...]  # Holm-adjusted p-values: rejected iff <= alpha
    rejected: tuple[bool, ...]

    def _at(self, name: str) -> int:
        return self.names.index(name)

    def level(self, name: str) -> float:
        return self.levels[self._at(name)]

    def is_rejected(self, name: str) -> bool:
        return self.rejected[self._at(name)]

    @property
    def all_rejected(self) -> bool:
        return bool(self.names) and all(self.rejected)

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "hypotheses": [
                {"name": n, "p_value": p, "level": lv, "adjusted_p": a, "rejected": r}
                for n, p, lv, a, r in zip(
                    self.names,
                    self.p_values,
                    self.levels,
                    self.adjusted_p,
                    self.rejected,
                    strict=True,
                )
            ],
        }


def holm(p_values: dict[str, float], alpha: float) -> HolmResult:
    """Holm's step-down procedure: sort the p-values (ties by name), test the k-th smallest
    (k = 0, 1, ...) at ``alpha / (m - k)``, and reject until the first one that fails; the
    rest are not rejected. Holds the family-wise error at ``alpha`` under any dependence."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    bad = {k: v for k, v in p_values.items() if not 0 <= v <= 1}
    if bad:
        raise ValueError(f"p-values must be in [0, 1], got {bad}")
    names = tuple(p_values)
    m = len(names)
    order = sorted(names, key=lambda k: (p_values[k], k))
    levels: dict[str, float] = {}
    adjusted: dict[str, float] = {}
    rejected: dict[str, bool] = {}
    running, still = 0.0, True
    for rank, name in enumerate(order):
        levels[name] = alpha / (m - rank)
        running = max(running, min(1.0, (m - rank) * p_values[name]))
        adjusted[name] = running
        still = still and p_values[name] <= levels[name]
        rejected[name] = still
    return HolmResult(
        alpha,
        names,
        tuple(p_values[k] for k in names),
        tuple(levels[k] for k in names),
        tuple(adjusted[k] for k in names),
        tuple(rejected[k] for k in names),
    )


@dataclass(frozen=True)
class Informativeness:
    """Whether the dense model beats a source's trivial baseline (see :func:`informative`)."""

    accuracy: float  # the dense model's
    lower: float  # its one-sided lower confidence bound (Clopper-Pearson)
    baseline_rate: float  # chance (1 / options) or always-the-same-answer, whichever is higher
    baseline_kind: str  # "chance" or "majority"
    n: int

    @property
    def informative(self) -> bool:
        return self.lower > self.baseline_rate

    def to_dict(self) -> dict:
        return dict(asdict(self), informative=self.informative)


def informative(
    correct: Sequence[bool], n_options: Sequence[int], answers: Sequence[int], alpha: float
) -> Informativeness:
    """A source on which the dense model is no better than always giving the same answer
    (its majority baseline: PubMedQA's "yes") or than chance (1 / options) cannot show that
    a candidate kept anything: both could lose everything and stay "non-inferior". The
    dense model is informative when the lower bound of its accuracy's one-sided level-
    ``alpha`` interval (Clopper-Pearson at confidence ``1 - 2 alpha``) lies above the higher
    of the two baselines."""
    n = len(correct)
    if n == 0 or len(n_options) != n or len(answers) != n:
        raise ValueError("need one option count and one answer per item, at least one item")
    k = sum(bool(c) for c in correct)
    lower, _ = clopper_pearson(k, n, confidence_for_alpha(alpha))
    chance = sum(1.0 / max(o, 1) for o in n_options) / n
    counts: dict[int, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    majority = max(counts.values()) / n
    kind, rate = ("majority", majority) if majority > chance else ("chance", chance)
    return Informativeness(k / n, lower, rate, kind, n)
