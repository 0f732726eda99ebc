"""The human-readable report: one self-contained HTML file (images embedded, no external
assets, so the Vertex AI console shows it as an ``HTML`` artifact) and a Markdown twin::

    paths = render_report(out_dir, gate=gate, baseline=base_results, candidate=cand_results,
                          baseline_predictions=bp, candidate_predictions=cp)
    paths["html"], paths["md"]
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from medprune.io.atomic import atomic_write_text
from medprune.report.data import CHART_CATEGORIES, ReportData, build_report_data
from medprune.report.format import fmt_delta, fmt_value
from medprune.report.markdown import render_markdown
from medprune.report.plots import accuracy_tradeoff, category_bars, confidence_interval, data_uri

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"

REPORT_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1e8449;font-weight:600}.fail{color:#c0392b;font-weight:600}
.banner{padding:10px 14px;border-radius:6px;font-size:16px;font-weight:600}
.banner.pass{background:#e9f7ef}.banner.fail{background:#fdedec}
.small{font-size:12px;color:#555}img{max-width:100%}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    num_cols: Sequence[int] = (),
    cls: str = "",
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            attr = ' class="num"' if i in num_cols else ""
            cells.append(f"<td{attr}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _outcome(passed: bool) -> str:
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def _img(png: bytes | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="{data_uri(png)}">' if png else ""


def render_html(data: ReportData) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(data.title)}</title><style>{REPORT_CSS}</style></head><body>"
    ]
    parts.append(f"<h1>{_e(data.title)}</h1>")
    verdict = (
        "Gate PASSED: the candidate may be promoted"
        if data.passed
        else "Gate FAILED: the candidate is not promoted"
    )
    parts.append(f'<div class="banner {"pass" if data.passed else "fail"}">{_e(verdict)}</div>')
    if data.run_info:
        parts.append(
            '<p class="small">'
            + " &middot; ".join(f"{_e(k)}: {_e(v)}" for k, v in data.run_info.items())
            + "</p>"
        )
    if data.reasons:
        parts.append(
            "<h2>Why it failed</h2><ul>"
            + "".join(f"<li>{_e(r)}</li>" for r in data.reasons)
            + "</ul>"
        )

    parts.append("<h2>Gate checks</h2>")
    rows = [
        [
            _e(c["name"]),
            _e(c["metric"]),
            fmt_value(c["value"]),
            _e(f"{c['comparison']} {c['threshold']:g}"),
            "UNINFORMATIVE"
            if (c.get("details") or {}).get("status") == "uninformative"
            else _outcome(c["passed"]),
            _e(c["message"]),
        ]
        for c in data.checks
    ]
    parts.append(
        _table(
            ["check", "metric", "value", "threshold", "outcome", "detail"],
            rows,
            num_cols=(2,),
            cls="gate-table",
        )
        if rows
        else "<p>No thresholds configured: the gate checks only that both evaluations completed.</p>"
    )

    for warning in data.warnings:
        parts.append(f'<div class="banner fail">{_e(warning)}</div>')
    if data.source_rows:
        from medprune.report.data import SOURCE_HEADERS

        held = (
            ""
            if data.family_alpha is None
            else f" (family-wise error held at {data.family_alpha:g} by Holm's step-down procedure)"
        )
        parts.append(f"<h2>Non-inferiority per source{_e(held)}</h2>")
        parts.append(
            _table(
                SOURCE_HEADERS,
                [[_e(cell) for cell in row] for row in data.source_rows],
                cls="source-table",
            )
        )

    if data.interval:
        ci = data.interval
        parts.append("<h2>Non-inferiority</h2>")
        parts.append(
            f"<p>Difference in {_e(ci.get('metric', 'acc'))} (candidate - baseline) <b>{ci['difference']:+.3f}</b>, "
            f"{ci['confidence']:.0%} confidence interval <b>[{ci['lower']:+.3f}, {ci['upper']:+.3f}]</b> "
            f"({_e(ci['method'])}, {ci['n']} paired items; {ci['baseline_only']} right only for the baseline, "
            f"{ci['candidate_only']} only for the candidate). Non-inferior when the lower bound is above "
            f"-{ci['margin']:g}.</p>"
        )
        parts.append(_img(confidence_interval(data), "confidence interval"))

    parts.append("<h2>Baseline vs candidate: summary</h2>")
    parts.append(
        _table(
            ["metric", "baseline", "candidate", "change"],
            [
                [_e(n), fmt_value(b), fmt_value(c), _e(fmt_delta(b, c))]
                for n, b, c in data.metric_rows
            ],
            num_cols=(1, 2, 3),
            cls="metrics-table",
        )
    )
    parts.append(_img(accuracy_tradeoff(data), "accuracy vs size and latency"))

    if data.sources:
        parts.append("<h2>By source</h2>")
        for src in data.sources:
            parts.append(f"<h3>{_e(src.name)}: {_e(src.description)}</h3>")
            parts.append(
                _table(
                    ["metric", "baseline", "candidate", "change"],
                    [
                        [_e(n), fmt_value(b), fmt_value(c), _e(fmt_delta(b, c))]
                        for n, b, c in src.rows
                    ],
                    num_cols=(1, 2, 3),
                    cls="metrics-table",
                )
            )
            if src.notes:
                parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in src.notes) + "</ul>")

    if data.categories:
        parts.append(
            f"<h2>Accuracy by category ({len(data.categories)} categories, worst change first)</h2>"
        )
        parts.append(_img(category_bars(data), "accuracy of the categories that changed most"))
        parts.append(
            f'<p class="small">Every category, worst change first (the chart shows at most '
            f"{CHART_CATEGORIES}: those with the largest net change in items).</p>"
        )
        parts.append(
            _table(
                [
                    "category",
                    "items",
                    "baseline",
                    "candidate",
                    "change",
                    "regressions",
                    "improvements",
                ],
                [
                    [
                        _e(c.category),
                        str(c.n),
                        f"{c.baseline_acc:.3f}",
                        f"{c.candidate_acc:.3f}",
                        f"{c.delta:+.3f}",
                        _count(c.regressions),
                        _count(c.improvements),
                    ]
                    for c in data.categories
                ],
                num_cols=(1, 2, 3, 4, 5, 6),
                cls="category-table",
            )
        )
    if data.regressions:
        parts.append("<h2>Worst regressions (right before, wrong now)</h2>")
        parts.append(
            _table(
                ["item", "category", "question", "right answer", "baseline", "candidate", "margin"],
                [
                    [
                        _e(r.id) + (' <span class="fail">critical</span>' if r.critical else ""),
                        _e(r.category),
                        _e(_short(r.question, 200)),
                        _e(r.answer),
                        _e(r.baseline_pred),
                        _e(r.candidate_pred),
                        f"{r.candidate_margin:.2f}",
                    ]
                    for r in data.regressions
                ],
                num_cols=(6,),
                cls="regressions-table",
            )
        )
    if data.confusion_matrix:
        parts.append("<h2>Candidate confusion matrix (rows: right option, columns: predicted)</h2>")
        parts.append(
            _table(
                ["", *data.confusion_labels],
                [
                    [f"<b>{_e(lbl)}</b>"] + [str(v) for v in row]
                    for lbl, row in zip(data.confusion_labels, data.confusion_matrix, strict=True)
                ],
                num_cols=tuple(range(1, len(data.confusion_labels) + 1)),
                cls="confusion-table",
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def render_report(
    out_dir: str | Path,
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
) -> dict[str, Path]:
    """Write ``report.html`` and ``report.md`` into ``out_dir``; return their paths."""
    data = build_report_data(
        gate=gate,
        baseline=baseline,
        candidate=candidate,
        baseline_predictions=baseline_predictions,
        candidate_predictions=candidate_predictions,
        critical_ids=critical_ids,
        run_info=run_info,
        title=title,
        baseline_notes=baseline_notes,
        candidate_notes=candidate_notes,
    )
    out = Path(out_dir)
    paths = {"html": out / HTML_FILE, "md": out / MARKDOWN_FILE}
    atomic_write_text(paths["html"], render_html(data))
    atomic_write_text(paths["md"], render_markdown(data))
    return paths
