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
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)  # bound memory: chunk x n indices at a time
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
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
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedInterval(
        "bootstrap", confidence, n, float(diff.mean()), float(lower), float(upper), int((diff < 0).sum()), int((diff > 0).sum())
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
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq for i in range(k + 1)]
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
    lower = 0.0 if k == 0 else _bisect(lambda p: alpha / 2 - (1 - _binom_cdf(k - 1, n, p)), 0.0, 1.0)
    # upper: P(X <= k | p) = alpha/2
    upper = 1.0 if k == n else _bisect(lambda p: _binom_cdf(k, n, p) - alpha / 2, 0.0, 1.0)
    return lower, upper


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of ``c`` out of ``b + c`` at 1/2."""
    n_d = b + c
    if n_d == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_cdf(min(b, c), n_d, 0.5))


def mcnemar_exact_ci(baseline: Sequence[bool], candidate: Sequence[bool], *, confidence: float = 0.95) -> PairedInterval:
    """Exact conditional (McNemar / Clopper-Pearson) interval for the paired difference."""
    n, b, c = _discordant(baseline, candidate)
    n_d = b + c
    if n_d == 0:
        lower = upper = 0.0
    else:
        p_lo, p_hi = clopper_pearson(c, n_d, confidence)
        lower, upper = (2 * p_lo - 1) * n_d / n, (2 * p_hi - 1) * n_d / n
    return PairedInterval("mcnemar", confidence, n, (c - b) / n, lower, upper, b, c, mcnemar_exact_p(b, c))
