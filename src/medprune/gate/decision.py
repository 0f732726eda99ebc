"""The promotion gate: compare candidate and baseline evaluations against thresholds.

Every configured threshold becomes one :class:`GateCheck` with its metric, value, threshold
and outcome, so a failed gate says exactly why. The gate passes only if both evaluations
completed, were run on identical items with identical settings, and every check passed::

    decision = decide(baseline_results, candidate_results, cfg.gate,
                      baseline_predictions=base_items, candidate_predictions=cand_items)
    decision.passed, decision.reasons
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

from medprune.config import GateConfig, NonInferiorityConfig
from medprune.config.gate import metric_direction
from medprune.evaluate.metrics import category_key, metric_values
from medprune.gate.stats import (
    HolmResult,
    Informativeness,
    PairedInterval,
    bootstrap_noninferiority_p,
    holm,
    informative,
    mcnemar_exact_ci,
    mcnemar_noninferiority_p,
    paired_bootstrap_ci,
    paired_bootstrap_mean_ci,
)

#: The built-in multiple-choice set (``evaluate.mcq``, tested by ``gate.non_inferiority``)
#: as a member of the gate's family of sources.
BUILTIN_SOURCE = "mcq"
NOTES_SOURCE = "visit_notes"

_EPS = 1e-12  # values exactly at a threshold pass, despite float rounding


@dataclass(frozen=True)
class GateCheck:
    name: str
    metric: str
    value: float | None
    threshold: float
    comparison: str  # ">=", "<=" or ">"
    passed: bool
    message: str
    details: dict | None = None


@dataclass(frozen=True)
class SourceVerdict:
    """One clinical source's part of the non-inferiority evidence."""

    name: str
    status: str  # "passed", "failed" or "uninformative"
    independent: bool | None  # of the recovery / calibration text; None: not checked
    margin: float
    metric: str
    p_value: float | None
    level: float | None  # Holm's level for this source (one-sided alpha)
    interval: dict | None  # at confidence 1 - 2 * level
    dense: dict | None  # Informativeness.to_dict() (multiple choice only)
    message: str
    enough_items: bool = True  # at least the source's min_items paired items

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[GateCheck] = field(default_factory=list)
    interval: dict | None = None  # the built-in set's non-inferiority interval, when configured
    sources: list[SourceVerdict] = field(default_factory=list)  # every source of the family
    holm: dict | None = None  # HolmResult.to_dict() over the informative sources
    warnings: list[str] = field(default_factory=list)
    # True when the non-inferiority evidence rests only on sources that are not independent
    # of the recovery data (run-local warns; the search refuses such evidence)
    dependent_evidence: bool = False

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "interval": self.interval,
            "sources": [s.to_dict() for s in self.sources],
            "holm": self.holm,
            "warnings": self.warnings,
            "dependent_evidence": self.dependent_evidence,
        }

    @classmethod
    def from_dict(cls, data: dict) -> GateDecision:
        return cls(
            passed=bool(data["passed"]),
            reasons=list(data["reasons"]),
            checks=[GateCheck(**c) for c in data.get("checks", [])],
            interval=data.get("interval"),
            sources=[SourceVerdict(**s) for s in data.get("sources", [])],
            holm=data.get("holm"),
            warnings=list(data.get("warnings", [])),
            dependent_evidence=bool(data.get("dependent_evidence", False)),
        )


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _check(
    name: str,
    metric: str,
    value: float | None,
    threshold: float,
    comparison: str,
    details: dict | None = None,
) -> GateCheck:
    if value is None:
        return GateCheck(
            name,
            metric,
            None,
            threshold,
            comparison,
            False,
            f"{metric}: not measured, so {name} ({comparison} {threshold:g}) cannot pass",
            details,
        )
    if comparison == ">=":
        ok = value >= threshold - _EPS
    elif comparison == "<=":
        ok = value <= threshold + _EPS
    elif comparison == ">":
        ok = value > threshold + _EPS
    else:
        raise ValueError(f"unknown comparison {comparison!r}")
    verdict = "ok" if ok else "FAILED"
    return GateCheck(
        name,
        metric,
        value,
        threshold,
        comparison,
        ok,
        f"{metric} = {_fmt(value)}, needs {comparison} {threshold:g} ({name}): {verdict}",
        details,
    )


def _flag(name: str, metric: str, ok: bool, message: str, details: dict | None = None) -> GateCheck:
    """A yes/no condition as a check (value 1 = holds)."""
    return GateCheck(name, metric, 1.0 if ok else 0.0, 1.0, ">=", ok, message, details)


def _settings_differences(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k) != b.get(k)]


def _paired(
    baseline_predictions: Sequence[dict] | None,
    candidate_predictions: Sequence[dict] | None,
    key: str,
) -> tuple[list[str], list[bool], list[bool]] | str:
    """Item ids with baseline and candidate correctness, or why they cannot be paired."""
    if baseline_predictions is None or candidate_predictions is None:
        missing = [
            lbl
            for lbl, p in (("baseline", baseline_predictions), ("candidate", candidate_predictions))
            if p is None
        ]
        return f"no per-item predictions for {' and '.join(missing)}"
    base = {str(p["id"]): bool(p[key]) for p in baseline_predictions}
    cand = {str(p["id"]): bool(p[key]) for p in candidate_predictions}
    if set(base) != set(cand):
        only_b, only_c = sorted(set(base) - set(cand)), sorted(set(cand) - set(base))
        return f"baseline and candidate were scored on different items (only baseline: {only_b[:5]}, only candidate: {only_c[:5]})"
    ids = sorted(base)
    return ids, [base[i] for i in ids], [cand[i] for i in ids]


def _paired_scores(
    baseline_predictions: Sequence[dict] | None,
    candidate_predictions: Sequence[dict] | None,
    key: str,
) -> tuple[list[str], list[float], list[float]] | str:
    """Item ids with baseline and candidate per-item scores (items where either has none,
    such as a note whose reference has no sections for coverage, are left out)."""
    if baseline_predictions is None or candidate_predictions is None:
        missing = [
            lbl
            for lbl, p in (("baseline", baseline_predictions), ("candidate", candidate_predictions))
            if p is None
        ]
        return f"no per-item results for {' and '.join(missing)}"
    base = {str(p["id"]): p.get(key) for p in baseline_predictions}
    cand = {str(p["id"]): p.get(key) for p in candidate_predictions}
    if set(base) != set(cand):
        only_b, only_c = sorted(set(base) - set(cand)), sorted(set(cand) - set(base))
        return f"baseline and candidate were scored on different items (only baseline: {only_b[:5]}, only candidate: {only_c[:5]})"
    both = {i: (b, c) for i, b in base.items() if b is not None and (c := cand[i]) is not None}
    if not both:
        return f"no item has a {key!r} score in both evaluations"
    ids = sorted(both)
    return ids, [float(both[i][0]) for i in ids], [float(both[i][1]) for i in ids]


def _non_inferiority(
    cfg: NonInferiorityConfig,
    paired,
    *,
    name: str = "non_inferiority",
    scope: str = "",
    graded: bool = False,
) -> tuple[GateCheck, PairedInterval | None]:
    """One paired non-inferiority check; ``graded`` scores (a note's ROUGE) use the bootstrap
    of the mean difference, correctness uses the configured interval."""
    metric = f"lower bound of {cfg.confidence:.0%} CI for candidate - baseline {cfg.metric}{scope}"
    label = f"non-inferiority{scope}"
    if isinstance(paired, str):
        return GateCheck(
            name,
            metric,
            None,
            -cfg.margin,
            ">",
            False,
            f"{label} cannot be shown: {paired}",
            {"why": paired},
        ), None
    _, base, cand = paired
    if graded:
        ci = paired_bootstrap_mean_ci(
            base, cand, confidence=cfg.confidence, n_resamples=cfg.n_resamples, seed=cfg.seed
        )
    elif cfg.method == "bootstrap":
        ci = paired_bootstrap_ci(
            base, cand, confidence=cfg.confidence, n_resamples=cfg.n_resamples, seed=cfg.seed
        )
    else:
        ci = mcnemar_exact_ci(base, cand, confidence=cfg.confidence)
    check = _check(name, metric, ci.lower, -cfg.margin, ">", ci.to_dict())
    width = ci.upper - ci.lower
    better = (
        ("scored higher for the baseline", "for the candidate")
        if graded
        else ("only the baseline got right", "only the candidate")
    )
    note = (
        f"difference {ci.difference:+.3f}, {cfg.confidence:.0%} CI [{ci.lower:+.3f}, {ci.upper:+.3f}] "
        f"(width {width:.3f}, {ci.method}) on {ci.n} paired items; {ci.baseline_only} {better[0]}, "
        f"{ci.candidate_only} {better[1]}"
    )
    verdict = (
        "not worse than the baseline by more than the margin"
        if check.passed
        else "non-inferiority NOT shown"
    )
    message = f"{label} (margin {cfg.margin:g}): {note}: {verdict}"
    if ci.n < cfg.min_items:
        message += f"; only {ci.n} items (< min_items {cfg.min_items}): the interval is too wide to rely on"
        check = GateCheck(
            check.name,
            check.metric,
            check.value,
            check.threshold,
            check.comparison,
            False,
            message + ": FAILED",
            check.details,
        )
    else:
        check = GateCheck(
            check.name,
            check.metric,
            check.value,
            check.threshold,
            check.comparison,
            check.passed,
            message,
            check.details,
        )
    return check, ci


def _critical(ids: list[str], paired) -> GateCheck:
    metric = "critical items the baseline got right and the candidate got wrong"
    if isinstance(paired, str):
        return GateCheck(
            "critical_items",
            metric,
            None,
            0,
            "<=",
            False,
            f"critical items cannot be checked: {paired}",
            {"why": paired},
        )
    all_ids, base, cand = paired
    by_id = {i: (b, c) for i, b, c in zip(all_ids, base, cand, strict=True)}
    missing = [i for i in ids if i not in by_id]
    regressed = [i for i in ids if i in by_id and by_id[i][0] and not by_id[i][1]]
    details = {"regressed": regressed, "missing": missing, "checked": len(ids)}
    if missing:
        return GateCheck(
            "critical_items",
            metric,
            None,
            0,
            "<=",
            False,
            f"critical items not evaluated: {missing} (every critical item must be in the MCQ data)",
            details,
        )
    check = _check("critical_items", metric, float(len(regressed)), 0, "<=", details)
    if regressed:
        return GateCheck(
            check.name,
            check.metric,
            check.value,
            check.threshold,
            check.comparison,
            False,
            f"candidate got wrong {len(regressed)} critical item(s) the baseline got right: {regressed}",
            details,
        )
    return check


@dataclass(frozen=True)
class GateInputs:
    """What every threshold check reads: the two evaluations (``results.json`` contents),
    their per-item MCQ predictions and the gate's config."""

    baseline: dict
    candidate: dict
    cfg: GateConfig
    baseline_predictions: Sequence[dict] | None = None
    candidate_predictions: Sequence[dict] | None = None

    @cached_property
    def baseline_metrics(self) -> dict[str, float]:
        return metric_values(self.baseline)

    @cached_property
    def candidate_metrics(self) -> dict[str, float]:
        return metric_values(self.candidate)

    def both(self, metric: str) -> tuple[float, float] | None:
        """The metric's (baseline, candidate) values, or None when either is missing."""
        b, c = self.baseline_metrics.get(metric), self.candidate_metrics.get(metric)
        return None if b is None or c is None else (b, c)


def _completion(g: GateInputs) -> list[GateCheck]:
    checks = []
    for label, res in (("baseline", g.baseline), ("candidate", g.candidate)):
        done = bool(res.get("complete"))
        checks.append(
            _flag(
                f"{label}_complete",
                f"{label} evaluation complete",
                done,
                f"{label} evaluation {'completed' if done else 'did not complete'}",
            )
        )
    return checks


def _judge_completion(g: GateInputs) -> list[GateCheck]:
    """A configured clinical judge that did not finish cannot count as passed."""
    checks = []
    for label, res in (("baseline", g.baseline), ("candidate", g.candidate)):
        if not ((res.get("settings") or {}).get("judge") or {}).get("enabled"):
            continue
        verdict = res.get("judge") or {}
        ok = bool(verdict.get("complete"))
        why = verdict.get("error") or "the judge did not run"
        checks.append(
            _flag(
                f"{label}_judge_complete",
                f"{label} clinical judge complete",
                ok,
                f"{label} judge rated {verdict.get('n', 0)} notes"
                if ok
                else f"{label} judge incomplete ({why}): the gate cannot count it as passed",
                {"usage": verdict.get("usage"), "error": verdict.get("error")},
            )
        )
    return checks


def _same_evaluation(g: GateInputs) -> list[GateCheck]:
    if "settings" not in g.baseline or "settings" not in g.candidate:
        return []
    diff = _settings_differences(g.baseline["settings"], g.candidate["settings"])
    return [
        _flag(
            "same_evaluation",
            "identical items and settings",
            not diff,
            "baseline and candidate evaluated on identical items and settings"
            if not diff
            else f"baseline and candidate evaluations differ in {diff}: they cannot be compared",
            {"differs": diff},
        )
    ]


def _min_accuracy(g: GateInputs) -> list[GateCheck]:
    if g.cfg.min_accuracy is None:
        return []
    acc = g.candidate_metrics.get("accuracy")
    return [_check("min_accuracy", "candidate accuracy", acc, g.cfg.min_accuracy, ">=")]


def _max_accuracy_drop(g: GateInputs) -> list[GateCheck]:
    if g.cfg.max_accuracy_drop is None:
        return []
    pair = g.both("accuracy")
    drop = None if pair is None else pair[0] - pair[1]
    return [
        _check(
            "max_accuracy_drop", "accuracy drop vs baseline", drop, g.cfg.max_accuracy_drop, "<="
        )
    ]


def _max_perplexity_ratio(g: GateInputs) -> list[GateCheck]:
    if g.cfg.max_perplexity_ratio is None:
        return []
    pair = g.both("perplexity")
    ratio = None if pair is None else pair[1] / pair[0]
    return [
        _check(
            "max_perplexity_ratio",
            "perplexity ratio candidate/baseline",
            ratio,
            g.cfg.max_perplexity_ratio,
            "<=",
        )
    ]


def _floors(g: GateInputs) -> list[GateCheck]:
    return [
        _check(f"floor_{metric}", f"candidate {metric}", g.candidate_metrics.get(metric), v, ">=")
        for metric, v in g.cfg.floors.items()
    ]


def _ceilings(g: GateInputs) -> list[GateCheck]:
    return [
        _check(f"ceiling_{metric}", f"candidate {metric}", g.candidate_metrics.get(metric), v, "<=")
        for metric, v in g.cfg.ceilings.items()
    ]


def _max_drops(g: GateInputs) -> list[GateCheck]:
    checks = []
    for metric, value in g.cfg.max_drop.items():
        pair = g.both(metric)
        checks.append(
            _check(
                f"max_drop_{metric}",
                f"{metric} drop (baseline - candidate)",
                None if pair is None else pair[0] - pair[1],
                value,
                "<=",
            )
        )
    return checks


def _max_increases(g: GateInputs) -> list[GateCheck]:
    checks = []
    for metric, value in g.cfg.max_increase.items():
        assert metric_direction(metric) is False
        pair = g.both(metric)
        checks.append(
            _check(
                f"max_increase_{metric}",
                f"{metric} increase (candidate - baseline)",
                None if pair is None else pair[1] - pair[0],
                value,
                "<=",
            )
        )
    return checks


def _category_floors(g: GateInputs) -> list[GateCheck]:
    """``gate.category_floors``; ``"*"`` is every category the candidate was scored on."""
    per_cat = (g.candidate.get("mcq") or {}).get("per_category", {})
    checks = []
    for cat, value in g.cfg.category_floors.items():
        cats = sorted(per_cat) if cat == "*" else [cat]
        if cat == "*" and not cats:
            checks.append(
                _check("category_floor_all", "candidate accuracy per category", None, value, ">=")
            )
        for name in cats:
            checks.append(
                _check(
                    f"category_floor_{category_key(name)}",
                    f"candidate accuracy on category {name!r}",
                    per_cat.get(name, {}).get("acc"),
                    value,
                    ">=",
                )
            )
    return checks


def _critical_items(g: GateInputs) -> list[GateCheck]:
    if not g.cfg.critical_items:
        return []
    paired = _paired(g.baseline_predictions, g.candidate_predictions, "correct")
    return [_critical(g.cfg.critical_items, paired)]


#: The gate's checks before the non-inferiority family, in the order a decision lists them;
#: each returns its checks (none when its threshold is not configured).
CHECKS: tuple[Callable[[GateInputs], list[GateCheck]], ...] = (
    _completion,
    _judge_completion,
    _same_evaluation,
    _min_accuracy,
    _max_accuracy_drop,
    _max_perplexity_ratio,
    _floors,
    _ceilings,
    _max_drops,
    _max_increases,
    _category_floors,
    _critical_items,
)


def decide(
    baseline: dict,
    candidate: dict,
    cfg: GateConfig,
    *,
    baseline_predictions: Sequence[dict] | None = None,
    candidate_predictions: Sequence[dict] | None = None,
    baseline_sources: dict[str, Sequence[dict] | None] | None = None,
    candidate_sources: dict[str, Sequence[dict] | None] | None = None,
    independent: dict[str, bool] | None = None,
    require_independent: bool = False,
) -> GateDecision:
    """Return the gate decision for two evaluations (``results.json`` contents) and their
    per-item MCQ predictions (``predictions.jsonl`` lines, needed for critical items and
    non-inferiority). ``baseline_sources`` / ``candidate_sources`` map each source of
    ``gate.source_non_inferiority`` (an MCQ source name, or ``visit_notes``) to its per-item
    lines (``predictions-NAME.jsonl``, ``notes.jsonl``).

    Every function of :data:`CHECKS` adds its checks, then the non-inferiority family: the
    built-in set and every source are one family of tests held at :func:`family_alpha` by
    Holm; the candidate passes only if non-inferior on every informative source.
    ``independent`` maps a source (``mcq`` for the built-in set) to whether it is
    independent of the recovery / calibration text: evidence resting only on dependent
    sources gets a warning (``dependent_evidence``), and with ``require_independent`` (the
    search) it cannot pass."""
    inputs = GateInputs(baseline, candidate, cfg, baseline_predictions, candidate_predictions)
    checks = [check for run in CHECKS for check in run(inputs)]
    items = {BUILTIN_SOURCE: (baseline_predictions, candidate_predictions)}
    for source in cfg.source_non_inferiority:
        items[source] = (
            (baseline_sources or {}).get(source),
            (candidate_sources or {}).get(source),
        )
    family = _family(cfg, items, independent=independent, require_independent=require_independent)
    checks.extend(family.checks)
    reasons = [c.message for c in checks if not c.passed]
    return GateDecision(
        passed=not reasons,
        reasons=reasons,
        checks=checks,
        interval=family.interval,
        sources=family.verdicts,
        holm=None if family.holm is None else family.holm.to_dict(),
        warnings=family.warnings,
        dependent_evidence=family.dependent_evidence,
    )


def family_of(cfg: GateConfig) -> dict[str, NonInferiorityConfig]:
    """The sources the gate's non-inferiority evidence rests on: the built-in set
    (``gate.non_inferiority``) and every ``gate.source_non_inferiority`` entry."""
    fam = {BUILTIN_SOURCE: cfg.non_inferiority} if cfg.non_inferiority is not None else {}
    fam.update(cfg.source_non_inferiority)
    return fam


def family_alpha(cfg: GateConfig) -> float | None:
    """The family-wise error the sources are held at together (one-sided): that of
    ``gate.non_inferiority`` (the search sets it to ``search.alpha``), else the smallest of
    the sources' own."""
    if cfg.non_inferiority is not None:
        return (1 - cfg.non_inferiority.confidence) / 2
    if cfg.source_non_inferiority:
        return min((1 - ni.confidence) / 2 for ni in cfg.source_non_inferiority.values())
    return None


@dataclass
class _Family:
    checks: list[GateCheck]
    verdicts: list[SourceVerdict]
    holm: HolmResult | None
    interval: dict | None
    warnings: list[str]
    dependent_evidence: bool


def _p_value(ni: NonInferiorityConfig, paired, graded: bool) -> float:
    _, base, cand = paired
    if graded or ni.method == "bootstrap":
        return bootstrap_noninferiority_p(
            base, cand, ni.margin, n_resamples=ni.n_resamples, seed=ni.seed
        )
    b = sum(1 for x, y in zip(base, cand, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base, cand, strict=True) if y and not x)
    return mcnemar_noninferiority_p(b, c, len(base), ni.margin)


def _dense(items: Sequence[dict] | None, key: str, alpha: float) -> Informativeness | None:
    """The dense model against the source's chance / majority rate (multiple choice)."""
    if not items or any("options" not in p or "answer" not in p or key not in p for p in items):
        return None
    return informative(
        [bool(p[key]) for p in items],
        [len(p["options"]) for p in items],
        [int(p["answer"]) for p in items],
        alpha,
    )


def _family(
    cfg: GateConfig,
    items: dict[str, tuple[Sequence[dict] | None, Sequence[dict] | None]],
    *,
    independent: dict[str, bool] | None,
    require_independent: bool,
) -> _Family:
    """Every source's non-inferiority test, held together at the family's alpha by Holm's
    step-down procedure (:func:`medprune.gate.stats.holm`). A source on which the dense
    model does not beat its chance / majority rate is uninformative: not tested, not a pass,
    not evidence."""
    fam = family_of(cfg)
    alpha = family_alpha(cfg)
    if not fam or alpha is None:
        return _Family([], [], None, None, [], False)
    paired_by: dict[str, tuple | str] = {}
    dense_by: dict[str, Informativeness | None] = {}
    p_by: dict[str, float] = {}
    for name, ni in fam.items():
        graded = name == NOTES_SOURCE
        base_items, cand_items = items.get(name, (None, None))
        key = "correct_norm" if ni.metric == "acc_norm" else "correct"
        paired = (
            _paired_scores(base_items, cand_items, ni.metric)
            if graded
            else _paired(base_items, cand_items, key)
        )
        paired_by[name] = paired
        # an unpaired source, or one with fewer than min_items items, fails for that reason;
        # its dense accuracy is not looked at
        dense_by[name] = (
            None
            if graded or isinstance(paired, str) or len(paired[0]) < ni.min_items
            else _dense(base_items, key, alpha)
        )
        dense = dense_by[name]
        if not isinstance(paired, str) and (dense is None or dense.informative):
            p_by[name] = _p_value(ni, paired, graded)
    result = holm(p_by, alpha) if p_by else None
    checks: list[GateCheck] = []
    verdicts: list[SourceVerdict] = []
    interval = None
    for name, ni in fam.items():
        builtin = name == BUILTIN_SOURCE
        scope = "" if builtin else f" on {name}"
        check_name = "non_inferiority" if builtin else f"non_inferiority_{category_key(name)}"
        dense = dense_by[name]
        indep = None if independent is None else independent.get(name)
        if dense is not None and not dense.informative:
            message = (
                f"non-inferiority{scope}: UNINFORMATIVE: the dense model's accuracy {dense.accuracy:.3f} "
                f"(one-sided {1 - alpha:.0%} lower bound {dense.lower:.3f}) does not beat its "
                f"{dense.baseline_kind} rate {dense.baseline_rate:.3f} on {dense.n} items, so no candidate "
                "can show here that it kept anything: not tested, not counted as evidence"
            )
            checks.append(
                GateCheck(
                    check_name,
                    f"dense accuracy lower bound vs {dense.baseline_kind} rate{scope}",
                    dense.lower,
                    dense.baseline_rate,
                    ">",
                    True,
                    message,
                    {"status": "uninformative", "dense": dense.to_dict()},
                )
            )
            verdicts.append(
                SourceVerdict(
                    name, "uninformative", indep, ni.margin, ni.metric, None, None, None,
                    dense.to_dict(), message,
                )
            )  # fmt: skip
            continue
        paired = paired_by[name]
        level = result.level(name) if result is not None and name in p_by else alpha
        at_level = ni.model_copy(update={"confidence": 1 - 2 * level})
        check, ci = _non_inferiority(
            at_level, paired, name=check_name, scope=scope, graded=name == NOTES_SOURCE
        )
        passed = check.passed
        message = check.message
        if result is not None and name in p_by:
            holm_ok = result.is_rejected(name)
            message += f" [Holm: p = {p_by[name]:.4g}, level {level:.4g} of family alpha {alpha:g}]"
            if check.passed and not holm_ok:
                message += ": FAILED: Holm's step-down stopped at a source with a smaller p-value, so it is not shown here"
            passed = check.passed and holm_ok
        details = dict(check.details or {}, status="passed" if passed else "failed", level=level)
        checks.append(
            GateCheck(
                check.name, check.metric, check.value, check.threshold, check.comparison,
                passed, message, details,
            )
        )  # fmt: skip
        ci_dict = None if ci is None else dict(ci.to_dict(), margin=ni.margin, metric=ni.metric)
        if builtin:
            interval = ci_dict
        verdicts.append(
            SourceVerdict(
                name, "passed" if passed else "failed", indep, ni.margin, ni.metric,
                p_by.get(name), level, ci_dict, None if dense is None else dense.to_dict(), message,
                ci is not None and ci.n >= ni.min_items,
            )
        )  # fmt: skip
    evidence = [v.name for v in verdicts if v.status != "uninformative"]
    independent_evidence = [n for n in evidence if independent and independent.get(n) is True]
    warnings: list[str] = []
    dependent_evidence = independent is not None and bool(evidence) and not independent_evidence
    if dependent_evidence:
        warnings.append(
            "WARNING: the non-inferiority evidence rests only on sources that are NOT independent of "
            f"the recovery / calibration text ({', '.join(evidence)}): recovery may have taught their "
            "domain back, so a pass says nothing about what the model knew elsewhere; add an "
            "independent evaluate.mcq_sources entry"
        )
    usable = independent_evidence if require_independent else evidence
    if not usable:
        states = ", ".join(
            f"{v.name}: {v.status}"
            + ("" if v.independent is None else ("" if v.independent else ", not independent"))
            for v in verdicts
        )
        need = (
            "informative source independent of the recovery data"
            if require_independent
            else "informative source"
        )
        checks.append(
            _flag(
                "certification_evidence",
                "sources that can show non-inferiority",
                False,
                f"nothing can be certified: no {need} ({states})",
                {"sources": [v.name for v in verdicts]},
            )
        )
    return _Family(checks, verdicts, result, interval, warnings, dependent_evidence)


def source_table(gate: dict) -> list[str]:
    """The per-source rows of a gate decision (``GateDecision.to_dict()``, plus the gate
    stage's ``independence``) as text lines: status, independence, Holm level, interval,
    and the dense model against chance / majority."""
    rows = gate.get("sources") or []
    if not rows:
        return []
    indep = {r["name"]: r for r in gate.get("independence") or []}
    out = [
        f"  {'source':14s} {'status':13s} {'independent':12s} {'level':>7s} "
        f"{'difference and CI':28s} dense vs chance/majority"
    ]
    for r in rows:
        ci = r.get("interval")
        interval = (
            f"{ci['difference']:+.3f} [{ci['lower']:+.3f}, {ci['upper']:+.3f}]" if ci else "-"
        )
        dense = r.get("dense")
        vs = (
            f"{dense['accuracy']:.3f} (>= {dense['lower']:.3f}) vs {dense['baseline_rate']:.3f}"
            if dense
            else "-"
        )
        ind = r.get("independent")
        ind_s = "unknown" if ind is None else ("yes" if ind else "NO")
        level = "-" if r.get("level") is None else f"{r['level']:.4f}"
        out.append(
            f"  {r['name']:14s} {r['status']:13s} {ind_s:12s} {level:>7s} {interval:28s} {vs}"
        )
        if r["name"] in indep and not indep[r["name"]]["independent"]:
            out.append(f"    not independent: {'; '.join(indep[r['name']]['reasons'])}")
    return out
