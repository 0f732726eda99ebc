"""The report's figures, drawn with matplotlib (no pyplot state, no display) and returned
as PNG bytes, so they can be embedded in HTML and Markdown without external files."""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure

from medprune.report.data import ReportData

BASE_COLOR, CAND_COLOR = "#7f8c8d", "#2471a3"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def category_bars(data: ReportData) -> bytes | None:
    """Baseline and candidate accuracy per category, side by side."""
    if not data.categories:
        return None
    cats = sorted(data.categories, key=lambda c: c.category)
    fig = Figure(figsize=(max(5.0, 0.9 * len(cats) + 2), 3.6))
    ax = fig.add_subplot()
    x = range(len(cats))
    ax.bar([i - 0.2 for i in x], [c.baseline_acc for c in cats], width=0.4, label="baseline", color=BASE_COLOR)
    ax.bar([i + 0.2 for i in x], [c.candidate_acc for c in cats], width=0.4, label="candidate", color=CAND_COLOR)
    ax.set_xticks(list(x), [f"{c.category}\n(n={c.n})" for c in cats], rotation=30 if len(cats) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy by category")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def accuracy_tradeoff(data: ReportData) -> bytes | None:
    """Accuracy against non-zero parameters and against forward latency (p50)."""
    b, c = data.baseline_metrics, data.candidate_metrics
    score = "accuracy" if "accuracy" in b and "accuracy" in c else "rouge_l" if "rouge_l" in b and "rouge_l" in c else None
    axes = [(k, label, scale) for k, label, scale in (
        ("nonzero_params", "non-zero parameters (millions)", 1e-6),
        ("latency_ms_p50", "forward latency p50 (ms)", 1.0),
    ) if k in b and k in c]
    if score is None or not axes:
        return None
    fig = Figure(figsize=(4.2 * len(axes), 3.4))
    for i, (key, label, scale) in enumerate(axes):
        ax = fig.add_subplot(1, len(axes), i + 1)
        for name, m, color in (("baseline", b, BASE_COLOR), ("candidate", c, CAND_COLOR)):
            ax.scatter([m[key] * scale], [m[score]], s=80, color=color, label=name, zorder=3)
            ax.annotate(name, (m[key] * scale, m[score]), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.annotate("", xy=(c[key] * scale, c[score]), xytext=(b[key] * scale, b[score]),
                    arrowprops={"arrowstyle": "->", "color": "#999999"})
        ax.set_xlabel(label)
        ax.set_ylabel(score)
        ax.grid(alpha=0.3)
        lo = min(b[score], c[score])
        ax.set_ylim(max(0.0, lo - 0.1), min(1.05, max(b[score], c[score]) + 0.1))
    fig.suptitle(f"{score} vs size and latency")
    return _png(fig)


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
    ax.set_xlabel(f"candidate - baseline {ci.get('metric', 'acc')} ({ci['confidence']:.0%} CI, {ci['method']}, n={ci['n']})")
    return _png(fig)
