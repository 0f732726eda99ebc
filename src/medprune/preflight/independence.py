"""Preflight findings about the certification sources: declared sources against their data
cards, and whether each source is independent of the recovery and calibration text
(:mod:`medprune.gate.sources`, :mod:`medprune.data.independence`)."""

from __future__ import annotations

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.preflight.findings import PreflightReport


def check_independence(cfg: RunConfig, report: PreflightReport) -> None:
    """Append one line per certification source: ``checked`` when independent, a warning
    when not (it cannot be the only evidence; for a search whose every source is dependent
    too), and an error for a declared source that contradicts its card."""
    from medprune.gate.sources import check_declared_sources, independence_report

    declared = check_declared_sources(cfg)
    if declared:
        report.errors.extend(declared)
        return
    try:
        verdicts = independence_report(cfg)
    except MedpruneError as exc:  # an unreadable file: its own check already names it
        report.warnings.append(f"independence check skipped: {exc}")
        return
    for v in verdicts:
        if v.independent:
            report.checked.append(f"independence: {v.message()}")
        else:
            report.warnings.append(
                f"independence: {v.message()}; it cannot be the only certification evidence"
            )
    if cfg.search is not None and verdicts and not any(v.independent for v in verdicts):
        # a warning here: `medprune search` refuses it after its own checks (split, leakage),
        # still before any model work, so that their more specific messages come first
        report.warnings.append(
            "search: no certification source is independent of the recovery / calibration text, "
            "so `medprune search` refuses this config; add an independent evaluate.mcq_sources entry"
        )
    ev, gate = cfg.evaluate, cfg.gate
    if (
        ev.visit_notes is not None
        and gate.non_inferiority is not None
        and "visit_notes" not in gate.source_non_inferiority
    ):
        report.warnings.append(
            "gate.source_non_inferiority.visit_notes: not set, so the visit notes are not part of the "
            "certification (a per-note score needs its own metric and margin, e.g. rougeLsum 0.05)"
        )
