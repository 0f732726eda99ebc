"""The promotion gate: compare candidate and baseline evaluations against thresholds.

Every configured threshold becomes one :class:`GateCheck` with its metric, value, threshold
and outcome, so a failed gate says exactly why. The gate passes only if both evaluations
completed, were run on identical items with identical settings, and every check passed::

    decision = decide(baseline_results, candidate_results, cfg.gate,
                      baseline_predictions=base_items, candidate_predictions=cand_items)
    decision.passed, decision.reasons
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from medprune.config import GateConfig, NonInferiorityConfig
from medprune.config.gate import metric_direction
from medprune.evaluate.metrics import category_key, metric_values
from medprune.gate.stats import (
    PairedInterval,
    mcnemar_exact_ci,
    paired_bootstrap_ci,
    paired_bootstrap_mean_ci,
)

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


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[GateCheck] = field(default_factory=list)
    interval: dict | None = None  # the non-inferiority confidence interval, when configured

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "interval": self.interval,
        }

    @classmethod
    def from_dict(cls, data: dict) -> GateDecision:
        return cls(
            passed=bool(data["passed"]),
            reasons=list(data["reasons"]),
            checks=[GateCheck(**c) for c in data.get("checks", [])],
            interval=data.get("interval"),
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


def decide(
    baseline: dict,
    candidate: dict,
    cfg: GateConfig,
    *,
    baseline_predictions: Sequence[dict] | None = None,
    candidate_predictions: Sequence[dict] | None = None,
    baseline_sources: dict[str, Sequence[dict] | None] | None = None,
    candidate_sources: dict[str, Sequence[dict] | None] | None = None,
) -> GateDecision:
    """Return the gate decision for two evaluations (``results.json`` contents) and their
    per-item MCQ predictions (``predictions.jsonl`` lines, needed for critical items and
    non-inferiority). ``baseline_sources`` / ``candidate_sources`` map each source of
    ``gate.source_non_inferiority`` (an MCQ source name, or ``visit_notes``) to its per-item
    lines (``predictions-NAME.jsonl``, ``notes.jsonl``)."""
    checks: list[GateCheck] = []
    for label, res in (("baseline", baseline), ("candidate", candidate)):
        done = bool(res.get("complete"))
        checks.append(
            _flag(
                f"{label}_complete",
                f"{label} evaluation complete",
                done,
                f"{label} evaluation {'completed' if done else 'did not complete'}",
            )
        )
    for label, res in (("baseline", baseline), ("candidate", candidate)):
        judged = ((res.get("settings") or {}).get("judge") or {}).get("enabled")
        if judged:
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
    if "settings" in baseline and "settings" in candidate:
        diff = _settings_differences(baseline["settings"], candidate["settings"])
        checks.append(
            _flag(
                "same_evaluation",
                "identical items and settings",
                not diff,
                "baseline and candidate evaluated on identical items and settings"
                if not diff
                else f"baseline and candidate evaluations differ in {diff}: they cannot be compared",
                {"differs": diff},
            )
        )
    base_m, cand_m = metric_values(baseline), metric_values(candidate)

    # the original three thresholds
    base_acc, cand_acc = base_m.get("accuracy"), cand_m.get("accuracy")
    if cfg.min_accuracy is not None:
        checks.append(
            _check("min_accuracy", "candidate accuracy", cand_acc, cfg.min_accuracy, ">=")
        )
    if cfg.max_accuracy_drop is not None:
        drop = None if base_acc is None or cand_acc is None else base_acc - cand_acc
        checks.append(
            _check(
                "max_accuracy_drop", "accuracy drop vs baseline", drop, cfg.max_accuracy_drop, "<="
            )
        )
    if cfg.max_perplexity_ratio is not None:
        bp, cp = base_m.get("perplexity"), cand_m.get("perplexity")
        ratio = None if bp is None or cp is None else cp / bp
        checks.append(
            _check(
                "max_perplexity_ratio",
                "perplexity ratio candidate/baseline",
                ratio,
                cfg.max_perplexity_ratio,
                "<=",
            )
        )

    for metric, value in cfg.floors.items():
        checks.append(
            _check(f"floor_{metric}", f"candidate {metric}", cand_m.get(metric), value, ">=")
        )
    for metric, value in cfg.ceilings.items():
        checks.append(
            _check(f"ceiling_{metric}", f"candidate {metric}", cand_m.get(metric), value, "<=")
        )
    for metric, value in cfg.max_drop.items():
        b, c = base_m.get(metric), cand_m.get(metric)
        checks.append(
            _check(
                f"max_drop_{metric}",
                f"{metric} drop (baseline - candidate)",
                None if b is None or c is None else b - c,
                value,
                "<=",
            )
        )
    for metric, value in cfg.max_increase.items():
        assert metric_direction(metric) is False
        b, c = base_m.get(metric), cand_m.get(metric)
        checks.append(
            _check(
                f"max_increase_{metric}",
                f"{metric} increase (candidate - baseline)",
                None if b is None or c is None else c - b,
                value,
                "<=",
            )
        )

    per_cat = (candidate.get("mcq") or {}).get("per_category", {})
    for cat, value in cfg.category_floors.items():
        cats = sorted(per_cat) if cat == "*" else [cat]
        if cat == "*" and not cats:
            checks.append(
                _check("category_floor_all", "candidate accuracy per category", None, value, ">=")
            )
        for name in cats:
            acc = per_cat.get(name, {}).get("acc")
            checks.append(
                _check(
                    f"category_floor_{category_key(name)}",
                    f"candidate accuracy on category {name!r}",
                    acc,
                    value,
                    ">=",
                )
            )

    interval = None
    if cfg.critical_items or cfg.non_inferiority:
        key = (
            "correct_norm"
            if cfg.non_inferiority and cfg.non_inferiority.metric == "acc_norm"
            else "correct"
        )
        paired_acc = _paired(baseline_predictions, candidate_predictions, "correct")
        if cfg.critical_items:
            checks.append(_critical(cfg.critical_items, paired_acc))
        if cfg.non_inferiority:
            paired = (
                paired_acc
                if key == "correct"
                else _paired(baseline_predictions, candidate_predictions, key)
            )
            check, ci = _non_inferiority(cfg.non_inferiority, paired)
            checks.append(check)
            if ci is not None:
                interval = dict(
                    ci.to_dict(),
                    margin=cfg.non_inferiority.margin,
                    metric=cfg.non_inferiority.metric,
                )

    for source, ni in cfg.source_non_inferiority.items():
        base_items = (baseline_sources or {}).get(source)
        cand_items = (candidate_sources or {}).get(source)
        paired_src: tuple[list[str], Sequence[float], Sequence[float]] | str
        if source == "visit_notes":
            paired_src = _paired_scores(base_items, cand_items, ni.metric)
        else:
            paired_src = _paired(
                base_items, cand_items, "correct_norm" if ni.metric == "acc_norm" else "correct"
            )
        check, _ = _non_inferiority(
            ni,
            paired_src,
            name=f"non_inferiority_{category_key(source)}",
            scope=f" on {source}",
            graded=source == "visit_notes",
        )
        checks.append(check)

    reasons = [c.message for c in checks if not c.passed]
    return GateDecision(passed=not reasons, reasons=reasons, checks=checks, interval=interval)
