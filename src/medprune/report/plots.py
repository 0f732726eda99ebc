"""The report's figures, drawn with matplotlib (no pyplot state, no display) and returned
as PNG bytes, so they can be embedded in HTML and Markdown without external files."""

from __future__ import annotations

import base64
import io
import textwrap

from matplotlib.figure import Figure

from medprune.report.data import CHART_CATEGORIES, ReportData, most_changed

BASE_COLOR, CAND_COLOR = "#7f8c8d", "#2471a3"


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (for :func:`data_uri`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def category_figure(data: ReportData, top: int = CHART_CATEGORIES) -> Figure | None:
    """Baseline and candidate accuracy of the ``top`` categories that changed most (net items
    gained or lost, see :func:`most_changed`), worst change at the top; the report's table
    lists every category."""
    if not data.categories:
        return None
    cats = most_changed(data.categories, top)
    fig = Figure(figsize=(9.0, 1.3 + 0.42 * len(cats)), layout="constrained")
    ax = fig.add_subplot()
    y = [len(cats) - 1 - i for i in range(len(cats))]  # worst change at the top
    ax.barh(
        [v + 0.2 for v in y],
        [c.baseline_acc for c in cats],
        height=0.4,
        label="baseline",
        color=BASE_COLOR,
    )
    ax.barh(
        [v - 0.2 for v in y],
        [c.candidate_acc for c in cats],
        height=0.4,
        label="candidate",
        color=CAND_COLOR,
    )
    labels = [textwrap.shorten(c.category, 56, placeholder="…") + f" (n={c.n})" for c in cats]
    ax.set_yticks(y, labels, fontsize=9)
    for v, c in zip(y, cats, strict=True):
        ax.text(
            1.02,
            v,
            f"{c.delta:+.2f} ({c.net_items:+d})",
            va="center",
            fontsize=9,
            color="#c0392b" if c.delta < 0 else "#1e8449" if c.delta > 0 else "#555555",
        )
    ax.set_xlim(0, 1.32)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("accuracy (at the right: change, and net items gained or lost)")
    shown = (
        f"the {len(cats)} of {len(data.categories)} categories that changed most"
        if len(cats) < len(data.categories)
        else "every category"
    )
    fig.suptitle(f"Accuracy by category: {shown}", fontsize=11)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def category_bars(data: ReportData, top: int = CHART_CATEGORIES) -> bytes | None:
    """:func:`category_figure` as PNG."""
    fig = category_figure(data, top)
    return png_bytes(fig) if fig is not None else None


def tradeoff_figure(data: ReportData) -> Figure | None:
    """Accuracy against non-zero parameters and against forward latency (p50), one panel
    each, sharing the accuracy axis."""
    b, c = data.baseline_metrics, data.candidate_metrics
    score = (
        "accuracy"
        if "accuracy" in b and "accuracy" in c
        else "rouge_l"
        if "rouge_l" in b and "rouge_l" in c
        else None
    )
    panels = [
        (k, label, scale)
        for k, label, scale in (
            ("nonzero_params", "non-zero parameters (millions)", 1e-6),
            ("latency_ms_p50", "forward latency p50 (ms)", 1.0),
        )
        if k in b and k in c
    ]
    if score is None or not panels:
        return None
    fig = Figure(figsize=(4.6 * len(panels) + 0.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        for name, m, color in (("baseline", b, BASE_COLOR), ("candidate", c, CAND_COLOR)):
            ax.scatter([m[key] * scale], [m[score]], s=80, color=color, label=name, zorder=3)
        ax.annotate(
            "",
            xy=(c[key] * scale, c[score]),
            xytext=(b[key] * scale, b[score]),
            arrowprops={"arrowstyle": "->", "color": "#999999"},
        )
        ax.set_xlabel(label)
        ax.margins(x=0.2)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(score)
    axes[0].legend(loc="best", fontsize=8)
    lo, hi = min(b[score], c[score]), max(b[score], c[score])
    axes[0].set_ylim(max(0.0, lo - 0.1), min(1.05, hi + 0.1))
    fig.suptitle(f"{score} vs size and latency", fontsize=11)
    return fig


def accuracy_tradeoff(data: ReportData) -> bytes | None:
    """:func:`tradeoff_figure` as PNG."""
    fig = tradeoff_figure(data)
    return png_bytes(fig) if fig is not None else None


def confidence_interval(data: ReportData) -> bytes | None:
    """The non-inferiority interval for (candidate - baseline) against -margin."""
    ci = data.interval
    if not ci:
        return None
    fig = Figure(figsize=(6.0, 1.9))
    ax = fig.add_subplot()
    color = "#1e8449" if ci["lower"] > -ci["margin"] else "#c0392b"
    ax.hlines(0, ci["lower"], ci["upper"], color=color, linewidth=4)
    ax.plot([ci["difference"]], [0], "o", color="black", zorder=3)
    ax.axvline(-ci["margin"], color="#c0392b", linestyle="--", linewidth=1)
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.text(-ci["margin"], 0.6, f" -margin ({-ci['margin']:g})", color="#c0392b", fontsize=8)
    span = max(abs(ci["lower"]), abs(ci["upper"]), ci["margin"]) * 1.3 + 1e-3
    ax.set_xlim(-span, span)
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_xlabel(
        f"candidate - baseline {ci.get('metric', 'acc')} ({ci['confidence']:.0%} CI, {ci['method']}, n={ci['n']})"
    )
    return png_bytes(fig)
