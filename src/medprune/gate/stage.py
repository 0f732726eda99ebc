"""The gate stage: compare the two evaluations and decide; the metrics the gate task logs."""

from __future__ import annotations

from pathlib import Path

from medprune.config import RunConfig
from medprune.evaluate.runner import (
    NOTES_FILE,
    read_predictions,
    read_results,
    source_predictions_file,
)
from medprune.gate.decision import GateDecision, decide
from medprune.io.atomic import atomic_write_json

GATE_FILE = "gate.json"


def stage_gate(
    cfg: RunConfig,
    baseline_dir: str | Path,
    candidate_dir: str | Path,
    out_dir: str | Path,
    *,
    require_independent: bool = False,
    independence: list[dict] | None = None,
) -> GateDecision:
    """Decide on promotion from both evaluation directories (results and per-item
    predictions); write ``gate.json`` into ``out_dir``. Every multiple-choice source is in
    the non-inferiority family (:func:`medprune.gate.sources.family_gate`); each source's
    independence of the training text is checked from the config's files and cards, and
    evidence resting only on dependent sources is a loud warning (an error with
    ``require_independent``, as the search's certification uses). ``independence``: the
    verdicts (``Independence.to_dict()``) when the caller has them."""
    from medprune.data.independence import Independence
    from medprune.gate.sources import family_gate, independence_map, independence_report

    gate = family_gate(cfg)
    files = {
        source: NOTES_FILE if source == "visit_notes" else source_predictions_file(source)
        for source in gate.source_non_inferiority
    }
    # the verdicts the caller already has (the search's, made on its downloaded files), else
    # from the config's local files (remote ones have none)
    report = (
        [Independence.from_dict(r) for r in independence]
        if independence is not None
        else independence_report(cfg)
    )
    decision = decide(
        read_results(baseline_dir),
        read_results(candidate_dir),
        gate,
        baseline_predictions=read_predictions(baseline_dir),
        candidate_predictions=read_predictions(candidate_dir),
        baseline_sources={s: read_predictions(baseline_dir, f) for s, f in files.items()},
        candidate_sources={s: read_predictions(candidate_dir, f) for s, f in files.items()},
        independent=independence_map(report) if report else None,
        require_independent=require_independent,
    )
    data = decision.to_dict()
    data["independence"] = [r.to_dict() for r in report]
    atomic_write_json(Path(out_dir) / GATE_FILE, data)
    return decision


def gate_task_metrics(
    decision: GateDecision, baseline_dir: str | Path, candidate_dir: str | Path
) -> dict[str, float]:
    """The scalar metrics the gate task logs (kfp ``Metrics``): both evaluations' metrics,
    whether the gate passed, each check's value and the confidence interval's bounds."""
    from medprune.evaluate.runner import flat_metrics

    metrics: dict[str, float] = {}
    for label, eval_dir in (("baseline", baseline_dir), ("candidate", candidate_dir)):
        metrics.update(flat_metrics(read_results(eval_dir), label))
    metrics["gate_passed"] = float(decision.passed)
    for check in decision.checks:
        if check.value is not None:
            metrics[f"gate_{check.name}"] = float(check.value)
    if decision.interval:
        metrics["gate_ci_lower"] = float(decision.interval["lower"])
        metrics["gate_ci_upper"] = float(decision.interval["upper"])
    return metrics
