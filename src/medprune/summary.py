"""Render a run summary (``summary.json``) as a plain-text table for the terminal."""

from __future__ import annotations


def _fmt(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "mb":
        return f"{value / 1e6:.1f} MB"
    if kind == "ms":
        return f"{value:.1f} ms"
    return f"{value:.2f}"


ROWS = [
    ("accuracy", "accuracy", "pct"),
    ("accuracy (length-norm)", "accuracy_norm", "pct"),
    ("perplexity", "perplexity", "float"),
    ("parameters", "total_params", "int"),
    ("non-zero parameters", "nonzero_params", "int"),
    ("size on disk", "size_bytes", "mb"),
    ("latency p50", "latency_ms_p50", "ms"),
    ("tokens/s", "tokens_per_s", "float"),
]


def format_summary(summary: dict) -> str:
    base = summary["metrics"]["baseline"]
    cand = summary["metrics"]["candidate"]
    cats = sorted(
        {k.removeprefix("baseline_accuracy_") for k in base if k.startswith("baseline_accuracy_") and k != "baseline_accuracy_norm"}
    )
    rows = [(label, key, kind) for label, key, kind in ROWS]
    rows[1:1] = [(f"  accuracy: {c}", f"accuracy_{c}", "pct") for c in cats]
    lines = [f"{'metric':34s} {'baseline':>14s} {'candidate':>14s}", "-" * 64]
    for label, key, kind in rows:
        b, c = base.get(f"baseline_{key}"), cand.get(f"candidate_{key}")
        if b is None and c is None:
            continue
        lines.append(f"{label:34s} {_fmt(b, kind):>14s} {_fmt(c, kind):>14s}")
    sparsity = summary.get("sparsity")
    if sparsity is not None:
        lines.append(f"{'sparsity of pruned layers':34s} {'':>14s} {_fmt(sparsity, 'pct'):>14s}")
    gate = summary["gate"]
    lines.append("")
    lines.append(f"gate: {'PASSED' if gate['passed'] else 'FAILED'}")
    for check in gate.get("checks", []):
        lines.append(f"  [{'ok' if check['passed'] else 'FAIL'}] {check['message']}")
    for reason in gate["reasons"]:
        if not any(reason == c["message"] for c in gate.get("checks", [])):
            lines.append(f"  [FAIL] {reason}")
    reg = summary.get("registered")
    if reg:
        lines.append(f"registered: {reg['model']} version {reg['version']} at {reg['path']} (aliases: {', '.join(reg['aliases']) or '-'})")
    else:
        lines.append("registered: nothing (the gate did not pass)")
    return "\n".join(lines)
