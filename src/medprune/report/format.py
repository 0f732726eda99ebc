"""Number formatting shared by the HTML and Markdown reports."""

from __future__ import annotations


def fmt_value(value: float | None) -> str:
    """Numbers as people read them: fractions to 4 digits, big counts with separators."""
    if value is None:
        return "n/a"
    if abs(value) >= 1e5 and float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def fmt_delta(base: float | None, cand: float | None) -> str:
    if base is None or cand is None:
        return ""
    d = cand - base
    rel = f" ({d / base:+.1%})" if base else ""
    return f"{d:+.4g}{rel}"
