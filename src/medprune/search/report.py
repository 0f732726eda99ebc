"""The search report: a Pareto plot of size (or tokens/s) against accuracy on the search
items for every candidate at every rung, the certification sequence, and every candidate
with why it stopped. One self-contained HTML file (the report package's style and PNG
embedding), rewritten after every step of the search."""

from __future__ import annotations

import html
from pathlib import Path

from matplotlib.figure import Figure

from medprune.io.atomic import atomic_write_text
from medprune.report.html import REPORT_CSS
from medprune.report.plots import data_uri, png_bytes

REPORT_FILE = "report.html"
_RUNG_COLORS = ["#bdc3c7", "#85c1e9", "#2471a3", "#154360", "#0b2239"]


def _objective_label(objective: str) -> str:
    return {
        "params": "parameters (M)",
        "nonzero_params": "non-zero parameters (M)",
        "size_bytes": "size on disk (MB)",
        "latency_ms_p50": "latency p50 (ms)",
        "tokens_per_s": "tokens/s",
    }[objective]


def _scale(objective: str, value: float) -> float:
    return value / 1e6 if objective in ("params", "nonzero_params", "size_bytes") else value


def pareto_plot(summary: dict) -> bytes | None:
    """Objective (x) against accuracy on the search items (y), one colour per rung; the
    certified candidate ringed; the dense model's accuracy as a line per rung."""
    objective = summary["objective"]
    points = []
    for c in summary["candidates"]:
        for rung, res in c["results"].items():
            if res.get("status") == "ok" and res.get("objective_value") is not None:
                points.append(
                    (
                        int(rung),
                        _scale(objective, res["objective_value"]),
                        res["accuracy"],
                        res["baseline_accuracy"],
                        c,
                    )
                )
    if not points:
        return None
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot()
    for rung in sorted({p[0] for p in points}):
        pts = [p for p in points if p[0] == rung]
        ax.scatter(
            [p[1] for p in pts],
            [p[2] for p in pts],
            s=28,
            color=_RUNG_COLORS[min(rung, 4)],
            label=f"rung {rung} ({len(pts)})",
            zorder=2,
        )
        ax.axhline(
            pts[0][3] - summary["margin"],
            color=_RUNG_COLORS[min(rung, 4)],
            lw=0.8,
            ls=":",
            zorder=1,
        )
    cert = summary.get("certified")
    if cert and cert.get("search"):
        res = cert["search"]
        ax.scatter(
            [_scale(objective, res["objective_value"])],
            [res["accuracy"]],
            s=160,
            facecolors="none",
            edgecolors="#1e8449",
            linewidths=2,
            label="certified",
            zorder=3,
        )
    ax.set_xlabel(
        _objective_label(objective)
        + (" (higher = faster)" if objective == "tokens_per_s" else " (lower = smaller)")
    )
    ax.set_ylabel("accuracy on search items")
    ax.set_title("Candidates: size vs clinical accuracy (dotted: dense - margin)")
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(fig)


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(v, kind: str = "f") -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "d":
        return f"{v:+.3f}"
    if kind == "M":
        return f"{v / 1e6:.1f}M"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def render_search_html(summary: dict) -> str:
    cert = summary.get("certified")
    parts = [
        f"<html><head><meta charset='utf-8'><title>medprune search</title><style>{REPORT_CSS}</style></head><body>",
        "<h1>medprune search</h1>",
    ]
    if summary.get("error"):
        parts.append(f"<div class='banner fail'>Search stopped: {_e(summary['error'])}</div>")
    elif cert:
        reg = summary.get("registered")
        where = (
            f"; registered as {_e(reg.get('model'))} version {_e(reg.get('version'))}"
            if reg
            else ""
        )
        parts.append(f"<div class='banner pass'>Certified: {_e(cert['label'])}{where}</div>")
    elif summary["certification"].get("order") is not None and summary["certification"]:
        parts.append(
            f"<div class='banner fail'>Nothing certified: {_e(summary['certification'].get('why'))}</div>"
        )
    else:
        parts.append("<div class='banner'>Search running: results so far</div>")
    png = pareto_plot(summary)
    if png:
        parts.append(f"<img alt='Pareto plot' src='{data_uri(png)}'>")
    split, size = summary["split"], summary.get("sample_size") or {}
    parts.append(
        "<h2>Items and guarantee</h2><p class='small'>"
        f"{split.get('n_search')} search items, {split.get('n_certification')} certification items "
        f"(stratified by {_e(', '.join(split.get('stratify_by') or []) or 'a separate file')}, seed {split.get('seed')}). "
        f"Margin {summary['margin']:g}. {_e(size.get('message', ''))}.</p>"
    )
    order = summary["certification"].get("order") or []
    if order:
        by_id = {c["id"]: c for c in summary["candidates"]}
        rows = []
        for cid in order:
            c = by_id[cid]
            ce = c.get("certification") or {}
            ci = ce.get("interval") or {}
            verdict = (
                "not tested"
                if not ce
                else (
                    "<span class='pass'>passed</span>"
                    if ce["passed"]
                    else "<span class='fail'>failed</span>"
                )
            )
            rows.append(
                f"<tr><td>{_e(c['label'])}</td><td class='num'>{_fmt(ci.get('difference'), 'd')}</td>"
                f"<td class='num'>[{_fmt(ci.get('lower'), 'd')}, {_fmt(ci.get('upper'), 'd')}]</td><td>{verdict}</td></tr>"
            )
        parts.append(
            "<h2>Certification (fixed sequence, least to most compressed)</h2><table><tr><th>candidate</th>"
            "<th>difference</th><th>interval</th><th>outcome</th></tr>" + "".join(rows) + "</table>"
        )
        parts.append(_sources_html(summary, by_id, order))
    parts.append(
        f"<h2>Candidates</h2><p class='small'>per rung: {summary['rung_counts']}; "
        f"CPU minutes {summary['cpu_minutes']:.1f}</p><table><tr><th>candidate</th><th>chain</th>"
        "<th>params</th><th>non-zero</th><th>rung</th><th>accuracy</th><th>vs dense</th><th>KL</th><th>why it stopped</th></tr>"
    )
    for c in summary["candidates"]:
        if not c["results"]:
            res, rung = {}, "-"
        else:
            rung = max(c["results"], key=int)
            res = c["results"][rung]
        kl = (c["results"].get("0") or {}).get("kl")
        parts.append(
            f"<tr><td>{_e(c['label'])}</td><td>{_e(c['chain'])}</td><td class='num'>{_fmt(res.get('total_params'), 'M')}</td>"
            f"<td class='num'>{_fmt(res.get('nonzero_params'), 'M')}</td><td class='num'>{rung}</td>"
            f"<td class='num'>{_fmt(res.get('accuracy'), 'pct')}</td><td class='num'>{_fmt(res.get('difference'), 'd')}</td>"
            f"<td class='num'>{_fmt(kl)}</td><td>{_e(c.get('stopped') or c.get('status'))}"
            + "".join(
                f"<br><span class='small'>cut short: {_e(w)}</span>"
                for w in c.get("cut_short") or []
            )
            + "</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)


def _independence_by_name(summary: dict) -> dict[str, dict]:
    cert = summary.get("certification") or {}
    return {r["name"]: r for r in cert.get("independence") or summary.get("independence") or []}


def _sources_html(summary: dict, by_id: dict, order: list[str]) -> str:
    """Per candidate and source: status, independence, Holm level and interval; then the
    smallest step each source alone certifies when nothing passed everywhere."""
    indep = _independence_by_name(summary)
    rows = []
    for cid in order:
        for v in (by_id[cid].get("certification") or {}).get("sources") or []:
            ci = v.get("interval") or {}
            ind = indep.get(v["name"])
            ind_s = (
                "unknown"
                if ind is None
                else ("yes" if ind["independent"] else "NO: " + "; ".join(ind["reasons"]))
            )
            dense = v.get("dense") or {}
            rows.append(
                f"<tr><td>{_e(by_id[cid]['label'])}</td><td>{_e(v['name'])}</td><td>{_e(v['status'])}</td>"
                f"<td>{_e(ind_s)}</td><td class='num'>{_fmt(v.get('level'))}</td>"
                f"<td class='num'>{_fmt(ci.get('difference'), 'd')} [{_fmt(ci.get('lower'), 'd')}, {_fmt(ci.get('upper'), 'd')}]</td>"
                f"<td class='num'>{_fmt(dense.get('accuracy'))} vs {_fmt(dense.get('baseline_rate'))}</td></tr>"
            )
    if not rows:
        return ""
    out = (
        "<h2>Per source (Holm across sources, family-wise error at search.alpha)</h2><table><tr>"
        "<th>candidate</th><th>source</th><th>status</th><th>independent</th><th>Holm level</th>"
        "<th>difference [interval]</th><th>dense vs chance / majority</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    per = (summary.get("certification") or {}).get("smallest_per_source") or {}
    if per:
        out += (
            "<p>No candidate passed on every source. On each source alone: "
            + "; ".join(f"{_e(name)}: {_e(v.get('label') or 'nothing')}" for name, v in per.items())
            + ".</p>"
        )
    return out


def render_search_report(summary: dict, out_dir: str | Path) -> Path:
    path = Path(out_dir) / REPORT_FILE
    atomic_write_text(path, render_search_html(summary))
    return path


def format_search_summary(summary: dict) -> str:
    """The search summary as a plain-text table for the terminal."""
    lines = [
        f"{'candidate':34s} {'rung':>4s} {'objective':>12s} {'accuracy':>9s} {'vs dense':>9s}  why it stopped",
        "-" * 110,
    ]
    for c in summary["candidates"]:
        rung = max(c["results"], key=int) if c["results"] else None
        res = c["results"].get(rung, {}) if rung is not None else {}
        obj = c.get("objective_value")
        acc, diff = res.get("accuracy"), res.get("difference")
        lines.append(
            f"{c['label'][:34]:34s} {rung if rung is not None else '-':>4} {(f'{obj:,.0f}' if obj is not None else '-'):>12s} "
            f"{(f'{acc:.3f}' if acc is not None else '-'):>9s} {(f'{diff:+.3f}' if diff is not None else '-'):>9s}  {c.get('stopped') or c.get('status')}"
        )
    lines.append("")
    lines.append(
        f"candidates per rung: {summary['rung_counts']}; CPU minutes: {summary['cpu_minutes']:.1f}"
    )
    size = summary.get("sample_size") or {}
    if size:
        lines.append(f"certification set: {size.get('message')}")
    if summary.get("error"):
        lines.append(f"search stopped: {summary['error']}")
    cert = summary.get("certified")
    if cert:
        ci = (cert.get("certification") or {}).get("interval") or {}
        lines.append(
            f"CERTIFIED: {cert['label']} ({summary['objective']} {cert.get('objective_value'):,.0f}); on the certification set "
            f"difference {ci.get('difference', 0):+.3f}, interval [{ci.get('lower', 0):+.3f}, {ci.get('upper', 0):+.3f}] "
            f"vs margin {summary['margin']:g}"
        )
    else:
        lines.append(
            f"nothing certified: {summary['error'] or (summary.get('certification') or {}).get('why')}"
        )
    lines.extend(format_search_sources(summary))
    reg = summary.get("registered")
    if reg:
        lines.append(
            f"registered: {reg.get('model')} version {reg.get('version')} at {reg.get('path')}"
        )
    return "\n".join(lines)


def format_search_sources(summary: dict) -> list[str]:
    """Terminal lines: each certification source's independence, each tested candidate's
    per-source verdict, and (nothing certified) the smallest step per source alone."""
    from medprune.gate.decision import source_table

    cert = summary.get("certification") or {}
    lines = []
    for r in cert.get("independence") or []:
        lines.append(
            f"source {r['name']} ({r['source']}): {r['verdict']}"
            + ("" if r["independent"] else ": " + "; ".join(r["reasons"]))
        )
    by_id = {c["id"]: c for c in summary["candidates"]}
    for cid in cert.get("order") or []:
        ce = by_id[cid].get("certification") or {}
        if ce.get("sources"):
            lines.append(f"{by_id[cid]['label']}:")
            lines.extend(source_table({"sources": ce["sources"]}))
    for name, v in (cert.get("smallest_per_source") or {}).items():
        lines.append(
            f"on {name} alone the search could certify: {v.get('label') or 'nothing (not even the least compressed)'}"
        )
    return lines
