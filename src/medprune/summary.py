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
    ("accuracy (per category below)", "accuracy", "pct"),
    ("accuracy (length-normalised)", "accuracy_norm", "pct"),
    ("perplexity", "perplexity", "float"),
    ("parameters", "total_params", "int"),
    ("non-zero parameters", "nonzero_params", "int"),
    ("size on disk", "size_bytes", "mb"),
    ("latency p50", "latency_ms_p50", "ms"),
    ("tokens/s", "tokens_per_s", "float"),
]


def _category_rows(summary: dict, width: int) -> list[str]:
    """Per-category accuracy rows, by the categories' own names, with item counts."""
    evaluation = summary.get("evaluation", {})
    base = (evaluation.get("baseline", {}).get("mcq") or {}).get("per_category", {})
    cand = (evaluation.get("candidate", {}).get("mcq") or {}).get("per_category", {})
    rows = []
    for cat in sorted(set(base) | set(cand)):
        n = (base.get(cat) or cand.get(cat) or {}).get("n")
        suffix = f" (n={n})" if n is not None else ""
        name = (
            cat if len(cat) + len(suffix) <= width - 4 else cat[: width - 7 - len(suffix)] + "..."
        )
        b, c = (base.get(cat) or {}).get("acc"), (cand.get(cat) or {}).get("acc")
        rows.append(f"{'  ' + name + suffix:{width}s} {_fmt(b, 'pct'):>14s} {_fmt(c, 'pct'):>14s}")
    return rows


def format_summary(summary: dict) -> str:
    base = summary["metrics"]["baseline"]
    cand = summary["metrics"]["candidate"]
    width = 56
    lines = [f"{'metric':{width}s} {'baseline':>14s} {'candidate':>14s}", "-" * (width + 30)]
    for label, key, kind in ROWS:
        b, c = base.get(f"baseline_{key}"), cand.get(f"candidate_{key}")
        if b is None and c is None:
            continue
        lines.append(f"{label:{width}s} {_fmt(b, kind):>14s} {_fmt(c, kind):>14s}")
        if key == "accuracy":
            lines.extend(_category_rows(summary, width))
    sparsity = summary.get("sparsity")
    if sparsity is not None:
        lines.append(
            f"{'sparsity of pruned layers':{width}s} {'':>14s} {_fmt(sparsity, 'pct'):>14s}"
        )
    gate = summary["gate"]
    lines.append("")
    lines.append(f"gate: {'PASSED' if gate['passed'] else 'FAILED'}")
    for check in gate.get("checks", []):
        uninformative = (check.get("details") or {}).get("status") == "uninformative"
        mark = "--" if uninformative else ("ok" if check["passed"] else "FAIL")
        lines.append(f"  [{mark}] {check['message']}")
    for reason in gate["reasons"]:
        if not any(reason == c["message"] for c in gate.get("checks", [])):
            lines.append(f"  [FAIL] {reason}")
    from medprune.gate.decision import source_table

    table = source_table(gate)
    if table:
        alpha = (gate.get("holm") or {}).get("alpha")
        held = "" if alpha is None else f", family-wise error held at {alpha:g} by Holm"
        lines.append(f"non-inferiority per source{held}:")
        lines.extend(table)
    for warning in gate.get("warnings", []):
        lines.append(f"  {warning}")
    reg = summary.get("registered")
    if reg:
        lines.append(
            f"registered: {reg['model']} version {reg['version']} at {reg['path']} (aliases: {', '.join(reg['aliases']) or '-'})"
        )
    else:
        lines.append("registered: nothing (the gate did not pass)")
    return "\n".join(lines)
