"""Certification: fixed-sequence testing of the final candidates on the certification set.

The order (least to most compressed) is fixed from search-set results only. Each candidate
in turn is evaluated on the certification items and put through the whole gate
(:func:`medprune.gate.decision.decide`: floors, critical items, category floors and the
paired non-inferiority test at level ``search.alpha``, i.e. a two-sided interval at
confidence ``1 - 2 alpha``); the first failure stops the sequence. The answer is the last
candidate that passed: the chance that it is really worse than the margin is at most alpha.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from medprune.config import GateConfig, RunConfig
from medprune.gate.decision import GateDecision, decide
from medprune.gate.stats import confidence_for_alpha, fixed_sequence


def certification_gate(cfg: RunConfig) -> GateConfig:
    """The run's gate with its non-inferiority test at level ``search.alpha`` and the
    certification method."""
    assert cfg.search is not None and cfg.gate.non_inferiority is not None
    ni = cfg.gate.non_inferiority.model_copy(
        update={"confidence": confidence_for_alpha(cfg.search.alpha), "method": cfg.search.certification.method}
    )
    return cfg.gate.model_copy(update={"non_inferiority": ni})


def certify_sequence(order: list[str], test: Callable[[str], GateDecision]) -> tuple[int, dict[str, GateDecision]]:
    """Test ``order`` in turn, stopping at the first failure; return the index of the last
    certified candidate (-1: none) and the decisions made."""
    decisions: dict[str, GateDecision] = {}
    passes: list[bool] = []
    for cid in order:
        decision = test(cid)
        decisions[cid] = decision
        passes.append(decision.passed)
        if not decision.passed:
            break
    return int(fixed_sequence(passes)), decisions


def gate_on_certification(
    cfg: RunConfig, baseline_eval: str | Path, candidate_eval: str | Path, out_dir: str | Path
) -> GateDecision:
    """The certification gate for one candidate; writes ``gate.json`` into ``out_dir``."""
    from medprune.evaluate.runner import read_predictions, read_results
    from medprune.gate.stage import GATE_FILE
    from medprune.io.atomic import atomic_write_json

    decision = decide(
        read_results(baseline_eval),
        read_results(candidate_eval),
        certification_gate(cfg),
        baseline_predictions=read_predictions(baseline_eval),
        candidate_predictions=read_predictions(candidate_eval),
    )
    atomic_write_json(Path(out_dir) / GATE_FILE, decision.to_dict())
    return decision


def decision_summary(decision: GateDecision) -> dict:
    return json.loads(json.dumps(decision.to_dict(), default=str))
