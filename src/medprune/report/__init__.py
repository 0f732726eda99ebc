"""Human-readable reports of a run: the gate, baseline vs candidate, per-category results."""

from medprune.report.html import HTML_FILE, MARKDOWN_FILE, render_report

__all__ = ["HTML_FILE", "MARKDOWN_FILE", "render_report"]
