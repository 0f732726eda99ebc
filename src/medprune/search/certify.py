"""Certification: fixed-sequence testing of the final candidates on the certification set.

The order (least to most compressed) is fixed from search-set results only. Each candidate
in turn is evaluated on the certification items and put through the whole gate
(:func:`medprune.gate.decision.decide`: floors, critical items, category floors and the
paired non-inferiority test at level ``search.alpha``, i.e. a two-sided interval at
confidence ``1 - 2 alpha``); the first failure stops the sequence. The answer is the last
candidate that passed: the chance that it is really worse than the margin is at most alpha.

Every clinical source is tested (the built-in certification split, every
``evaluate.mcq_sources`` entry, visit notes with ``gate.source_non_inferiority.visit_notes``):
a candidate passes only if it is non-inferior on each informative source, with the
family-wise error over the sources held at ``search.alpha`` by Holm's step-down procedure
(:func:`medprune.gate.stats.holm`). The sequence runs over candidates and Holm within each
candidate's test; each candidate's test then has level alpha for "worse than the margin on
at least one source", so the fixed sequence still holds alpha overall. Evidence from
sources that share their source, generator or most concepts with the recovery text
(:mod:`medprune.data.independence`) cannot certify: at least one informative, independent
source must pass. When nothing is certified, :func:`smallest_per_source` names, for each
source alone, the most compressed candidate its own fixed sequence would have certified.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from medprune.config import GateConfig, RunConfig
from medprune.gate.decision import GateDecision
from medprune.gate.stats import confidence_for_alpha, fixed_sequence


def certification_gate(cfg: RunConfig) -> GateConfig:
    """The run's gate with its non-inferiority test at level ``search.alpha`` and the
    certification method."""
    assert cfg.search is not None and cfg.gate.non_inferiority is not None
    ni = cfg.gate.non_inferiority.model_copy(
        update={
            "confidence": confidence_for_alpha(cfg.search.alpha),
            "method": cfg.search.certification.method,
        }
    )
    return cfg.gate.model_copy(update={"non_inferiority": ni})


def certify_sequence(
    order: list[str], test: Callable[[str], GateDecision]
) -> tuple[int, dict[str, GateDecision]]:
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
    cfg: RunConfig,
    baseline_eval: str | Path,
    candidate_eval: str | Path,
    out_dir: str | Path,
    independence: list[dict] | None = None,
) -> GateDecision:
    """The certification gate for one candidate (the gate stage, with the non-inferiority
    test at level alpha); writes ``gate.json`` into ``out_dir``."""
    from medprune.gate.stage import stage_gate

    data = json.loads(cfg.to_json())
    data["gate"] = json.loads(certification_gate(cfg).model_dump_json())
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return stage_gate(
        RunConfig.model_validate(data),
        baseline_eval,
        candidate_eval,
        out_dir,
        require_independent=True,
        independence=independence,
    )


def decision_summary(decision: GateDecision) -> dict:
    return json.loads(json.dumps(decision.to_dict(), default=str))


def passes_alone(decision: GateDecision, source: str, alpha: float) -> bool:
    """Whether ``decision`` shows non-inferiority on ``source`` tested alone at ``alpha``
    (no other source, so no Holm adjustment): informative, enough items, p <= alpha."""
    for v in decision.sources:
        if v.name == source:
            if v.status == "uninformative" or v.p_value is None:
                return False
            return v.p_value <= alpha and v.enough_items
    return False


def smallest_per_source(
    order: list[str], decisions: dict[str, GateDecision], alpha: float
) -> dict[str, str | None]:
    """For each source, the last candidate of ``order`` its own fixed sequence certifies
    (each candidate tested on that source alone at ``alpha``, stopping at the first failure
    or at the first candidate without a decision); None: not even the first."""
    sources: list[str] = []
    for cid in order:
        for v in decisions[cid].sources if cid in decisions else []:
            if v.name not in sources:
                sources.append(v.name)
    out: dict[str, str | None] = {}
    for source in sources:
        passes = [cid in decisions and passes_alone(decisions[cid], source, alpha) for cid in order]
        index = int(fixed_sequence(passes))
        out[source] = order[index] if index >= 0 else None
    return out
