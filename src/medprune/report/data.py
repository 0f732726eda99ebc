"""What the report shows, computed from evaluations and the gate decision (no rendering)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from medprune.evaluate.formats import LETTERS
from medprune.evaluate.metrics import category_key, metric_values
from medprune.report.sources import SourceSection, source_sections

#: Categories the chart shows (those that changed most); the table lists them all.
CHART_CATEGORIES = 12


@dataclass
class CategoryComparison:
    category: str
    n: int
    baseline_acc: float
    candidate_acc: float
    # Items the baseline got right and the candidate wrong, and the other way round; None
    # when only per-category accuracies are known (no predictions).
    regressions: int | None
    improvements: int | None

    @property
    def delta(self) -> float:
        return self.candidate_acc - self.baseline_acc

    @property
    def net_items(self) -> int:
        """Items the candidate gets right minus those the baseline gets right."""
        return round(self.delta * self.n)


@dataclass
class ItemRegression:
    id: str
    category: str
    question: str
    answer: str
    baseline_pred: str
    candidate_pred: str
    candidate_margin: float  # log-likelihood of the candidate's pick minus the right option's
    critical: bool


@dataclass
class ReportData:
    title: str
    passed: bool
    reasons: list[str]
    checks: list[dict]
    interval: dict | None
    # Summary metrics (name, baseline, candidate); per-category accuracies are in categories.
    metric_rows: list[tuple[str, float | None, float | None]]
    categories: list[CategoryComparison]  # worst change first
    regressions: list[ItemRegression]
    confusion_labels: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    run_info: dict = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    sources: list[SourceSection] = field(default_factory=list)
    # the gate's non-inferiority family: one row per source (status, independence, Holm
    # level, interval, dense vs chance / majority), and the gate's warnings
    source_rows: list[list[str]] = field(default_factory=list)
    family_alpha: float | None = None
    warnings: list[str] = field(default_factory=list)


def _option_text(pred: dict, index: int) -> str:
    options = pred.get("options")
    letter = LETTERS[index] if index < len(LETTERS) else str(index)
    if options and 0 <= index < len(options):
        return f"{letter}. {options[index]}"
    return letter


def confusion_matrix(predictions: Sequence[dict]) -> tuple[list[str], list[list[int]]]:
    """Rows: the right option's letter; columns: the predicted letter."""
    if not predictions:
        return [], []
    width = max(
        max(len(p.get("options") or []), p["answer"] + 1, p["pred"] + 1) for p in predictions
    )
    labels = [LETTERS[i] if i < len(LETTERS) else str(i) for i in range(width)]
    matrix = [[0] * width for _ in range(width)]
    for p in predictions:
        matrix[p["answer"]][p["pred"]] += 1
    return labels, matrix


def compare_categories(
    baseline_predictions: Sequence[dict], candidate_predictions: Sequence[dict]
) -> list[CategoryComparison]:
    """Per-category accuracy of both models on the items both answered, worst change first."""
    base = {str(p["id"]): p for p in baseline_predictions}
    rows: dict[str, list[tuple[bool, bool]]] = {}
    for c in candidate_predictions:
        b = base.get(str(c["id"]))
        if b is None:
            continue
        rows.setdefault(c.get("category", "all"), []).append(
            (bool(b["correct"]), bool(c["correct"]))
        )
    out = [
        CategoryComparison(
            category=cat,
            n=len(v),
            baseline_acc=sum(b for b, _ in v) / len(v),
            candidate_acc=sum(c for _, c in v) / len(v),
            regressions=sum(1 for b, c in v if b and not c),
            improvements=sum(1 for b, c in v if c and not b),
        )
        for cat, v in rows.items()
    ]
    return sorted(out, key=lambda r: (r.delta, -(r.regressions or 0), r.category))


def categories_from_results(baseline: dict, candidate: dict) -> list[CategoryComparison]:
    """Per-category accuracy from two evaluations' ``mcq.per_category`` (when there are no
    predictions to pair items), for categories both evaluated; worst change first."""
    base = (baseline.get("mcq") or {}).get("per_category") or {}
    cand = (candidate.get("mcq") or {}).get("per_category") or {}
    out = [
        CategoryComparison(cat, int(cand[cat]["n"]), base[cat]["acc"], cand[cat]["acc"], None, None)
        for cat in sorted(set(base) & set(cand))
    ]
    return sorted(out, key=lambda r: (r.delta, r.category))


def most_changed(
    categories: Sequence[CategoryComparison], top: int = CHART_CATEGORIES
) -> list[CategoryComparison]:
    """The ``top`` categories that changed most, worst change first. Ranked by the net
    number of items gained or lost (then by the change in accuracy): ranking by accuracy
    alone would fill the chart with one-item categories, where a single answer is 100%."""
    chosen = sorted(categories, key=lambda c: (-abs(c.net_items), -abs(c.delta), c.category))[:top]
    return sorted(chosen, key=lambda c: (c.delta, c.category))


def item_regressions(
    baseline_predictions: Sequence[dict],
    candidate_predictions: Sequence[dict],
    critical_ids: Sequence[str] = (),
    limit: int = 20,
) -> list[ItemRegression]:
    """Items the baseline got right and the candidate wrong: critical ones first, then the
    most confidently wrong (largest log-likelihood margin for the wrong pick)."""
    base = {str(p["id"]): p for p in baseline_predictions}
    critical = set(critical_ids)
    out = []
    for c in candidate_predictions:
        b = base.get(str(c["id"]))
        if b is None or not b["correct"] or c["correct"]:
            continue
        lls = c.get("loglikelihoods") or []
        margin = lls[c["pred"]] - lls[c["answer"]] if lls else 0.0
        out.append(
            ItemRegression(
                id=str(c["id"]),
                category=c.get("category", "all"),
                question=str(c.get("question", "")),
                answer=_option_text(c, c["answer"]),
                baseline_pred=_option_text(c, b["pred"]),
                candidate_pred=_option_text(c, c["pred"]),
                candidate_margin=float(margin),
                critical=str(c["id"]) in critical,
            )
        )
    out.sort(key=lambda r: (not r.critical, -r.candidate_margin, r.id))
    return out[:limit]


def build_report_data(
    *,
    gate: dict,
    baseline: dict,
    candidate: dict,
    baseline_predictions: Sequence[dict] | None = None,
    candidate_predictions: Sequence[dict] | None = None,
    critical_ids: Sequence[str] = (),
    run_info: dict | None = None,
    title: str = "medprune: candidate vs baseline",
    baseline_notes: Sequence[dict] | None = None,
    candidate_notes: Sequence[dict] | None = None,
) -> ReportData:
    base_m, cand_m = metric_values(baseline), metric_values(candidate)
    per_category = {
        f"accuracy_{category_key(cat)}"
        for results in (baseline, candidate)
        for cat in ((results.get("mcq") or {}).get("per_category") or {})
    }
    names = sorted((set(base_m) | set(cand_m)) - per_category, key=_metric_order)
    bp, cp = baseline_predictions or [], candidate_predictions or []
    labels, matrix = confusion_matrix(cp)
    categories = (
        compare_categories(bp, cp) if bp and cp else categories_from_results(baseline, candidate)
    )
    return ReportData(
        title=title,
        passed=bool(gate.get("passed")),
        reasons=list(gate.get("reasons", [])),
        checks=list(gate.get("checks", [])),
        interval=gate.get("interval"),
        metric_rows=[(n, base_m.get(n), cand_m.get(n)) for n in names],
        categories=categories,
        regressions=item_regressions(bp, cp, critical_ids),
        confusion_labels=labels,
        confusion_matrix=matrix,
        run_info=dict(run_info or {}),
        baseline_metrics=base_m,
        candidate_metrics=cand_m,
        sources=source_sections(
            baseline, candidate, baseline_notes=baseline_notes, candidate_notes=candidate_notes
        ),
        source_rows=source_rows(gate),
        family_alpha=(gate.get("holm") or {}).get("alpha"),
        warnings=list(gate.get("warnings", [])),
    )


def source_rows(gate: dict) -> list[list[str]]:
    """The gate's per-source verdicts as table cells: source, status, independent of the
    training text, Holm level, difference [interval], dense model vs chance / majority."""
    indep = {r["name"]: r for r in gate.get("independence") or []}
    rows = []
    for v in gate.get("sources") or []:
        ci, dense, ind = v.get("interval"), v.get("dense"), indep.get(v["name"])
        rows.append(
            [
                v["name"],
                v["status"],
                "unknown"
                if ind is None
                else ("yes" if ind["independent"] else "NO: " + "; ".join(ind["reasons"])),
                "-" if v.get("level") is None else f"{v['level']:.4g}",
                f"{ci['difference']:+.3f} [{ci['lower']:+.3f}, {ci['upper']:+.3f}] at {ci['confidence']:.1%}"
                if ci
                else "-",
                f"{dense['accuracy']:.3f} (lower {dense['lower']:.3f}) vs {dense['baseline_kind']} "
                f"{dense['baseline_rate']:.3f}"
                if dense
                else "-",
            ]
        )
    return rows


SOURCE_HEADERS = [
    "source",
    "status",
    "independent of training text",
    "Holm level",
    "difference [interval]",
    "dense vs chance / majority",
]


_ORDER = ["accuracy", "accuracy_norm", "rouge_l", "exact_match", "perplexity", "bits_per_byte"]


def _metric_order(name: str) -> tuple[int, str]:
    if name in _ORDER:
        return _ORDER.index(name), name
    return len(_ORDER), name
