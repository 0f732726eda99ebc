"""The report as Markdown (kfp ``Markdown`` artifact, PR comments): the same tables as the
HTML report, the figures embedded as data URIs."""

from __future__ import annotations

from collections.abc import Sequence

from medprune.report.data import ReportData
from medprune.report.format import fmt_delta, fmt_value
from medprune.report.plots import accuracy_tradeoff, category_bars, confidence_interval, data_uri


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _img(png: bytes | None, alt: str) -> list[str]:
    return [f"![{alt}]({data_uri(png)})", ""] if png else []


def render_markdown(data: ReportData) -> str:
    out = [f"# {data.title}", ""]
    out.append(
        "**Gate PASSED**: the candidate may be promoted."
        if data.passed
        else "**Gate FAILED**: the candidate is not promoted."
    )
    out.append("")
    if data.run_info:
        out += [" · ".join(f"{k}: {v}" for k, v in data.run_info.items()), ""]
    if data.reasons:
        out += ["## Why it failed", ""] + [f"- {r}" for r in data.reasons] + [""]
    out += ["## Gate checks", ""]
    if data.checks:
        out.append(
            _table(
                ["check", "metric", "value", "threshold", "outcome"],
                [
                    [
                        c["name"],
                        c["metric"],
                        fmt_value(c["value"]),
                        f"{c['comparison']} {c['threshold']:g}",
                        "uninformative"
                        if (c.get("details") or {}).get("status") == "uninformative"
                        else ("PASS" if c["passed"] else "**FAIL**"),
                    ]
                    for c in data.checks
                ],
            )
        )
    else:
        out.append("No thresholds configured.")
    out.append("")
    out += [f"**{w}**" for w in data.warnings] + ([""] if data.warnings else [])
    if data.source_rows:
        from medprune.report.data import SOURCE_HEADERS

        held = (
            "" if data.family_alpha is None else f" (Holm, family-wise alpha {data.family_alpha:g})"
        )
        out += [
            f"## Non-inferiority per source{held}",
            "",
            _table(SOURCE_HEADERS, data.source_rows),
            "",
        ]
    if data.interval:
        ci = data.interval
        line = (
            f"Difference {ci['difference']:+.3f}, {ci['confidence']:.0%} CI [{ci['lower']:+.3f}, {ci['upper']:+.3f}] "
            f"({ci['method']}, n={ci['n']}); margin {ci['margin']:g}."
        )
        out += ["## Non-inferiority", "", line, ""]
        out += _img(confidence_interval(data), "confidence interval")
    out += ["## Baseline vs candidate: summary", ""]
    out.append(
        _table(
            ["metric", "baseline", "candidate", "change"],
            [[n, fmt_value(b), fmt_value(c), fmt_delta(b, c)] for n, b, c in data.metric_rows],
        )
    )
    out.append("")
    out += _img(accuracy_tradeoff(data), "accuracy vs size and latency")
    if data.sources:
        out += ["## By source", ""]
        for src in data.sources:
            out += [f"### {src.name}: {src.description}", ""]
            out.append(
                _table(
                    ["metric", "baseline", "candidate", "change"],
                    [[n, fmt_value(b), fmt_value(c), fmt_delta(b, c)] for n, b, c in src.rows],
                )
            )
            out.append("")
            out += [f"- {n}" for n in src.notes] + ([""] if src.notes else [])
    if data.categories:
        out += [
            f"## Accuracy by category ({len(data.categories)} categories, worst change first)",
            "",
        ]
        out += _img(category_bars(data), "accuracy of the categories that changed most")
        out.append(
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
                        c.category,
                        c.n,
                        f"{c.baseline_acc:.3f}",
                        f"{c.candidate_acc:.3f}",
                        f"{c.delta:+.3f}",
                        "n/a" if c.regressions is None else c.regressions,
                        "n/a" if c.improvements is None else c.improvements,
                    ]
                    for c in data.categories
                ],
            )
        )
        out.append("")
    if data.regressions:
        out += ["## Worst regressions (right before, wrong now)", ""]
        out.append(
            _table(
                ["item", "category", "right answer", "baseline", "candidate", "margin"],
                [
                    [
                        r.id + (" (critical)" if r.critical else ""),
                        r.category,
                        r.answer,
                        r.baseline_pred,
                        r.candidate_pred,
                        f"{r.candidate_margin:.2f}",
                    ]
                    for r in data.regressions
                ],
            )
        )
        out.append("")
    return "\n".join(out) + "\n"
