"""The promotion gate: compare candidate and baseline evaluations against thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from medprune.config import GateConfig

_EPS = 1e-12  # values exactly at a threshold pass, despite float rounding


@dataclass(frozen=True)
class GateCheck:
    name: str
    metric: str
    value: float | None
    threshold: float
    comparison: str  # ">=" or "<="
    passed: bool
    message: str


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[GateCheck] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": self.reasons, "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict) -> GateDecision:
        return cls(
            passed=bool(data["passed"]),
            reasons=list(data["reasons"]),
            checks=[GateCheck(**c) for c in data.get("checks", [])],
        )


def _check(name: str, metric: str, value: float | None, threshold: float, comparison: str) -> GateCheck:
    if value is None:
        return GateCheck(name, metric, None, threshold, comparison, False, f"{metric}: not measured, so {name} ({comparison} {threshold:g}) cannot pass")
    ok = value >= threshold - _EPS if comparison == ">=" else value <= threshold + _EPS
    verdict = "ok" if ok else "FAILED"
    return GateCheck(name, metric, value, threshold, comparison, ok, f"{metric} = {value:.4g}, needs {comparison} {threshold:g} ({name}): {verdict}")


def _get(results: dict, *path: str) -> float | None:
    node = results
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return float(node)


def decide(baseline: dict, candidate: dict, cfg: GateConfig) -> GateDecision:
    """Return the gate decision. Every configured threshold becomes one check; the gate passes
    only if both evaluations completed and every check passed."""
    checks: list[GateCheck] = []
    reasons: list[str] = []
    for label, res in (("baseline", baseline), ("candidate", candidate)):
        if not res.get("complete"):
            reasons.append(f"{label} evaluation did not complete")
    base_acc, cand_acc = _get(baseline, "mcq", "acc"), _get(candidate, "mcq", "acc")
    base_ppl, cand_ppl = _get(baseline, "perplexity", "perplexity"), _get(candidate, "perplexity", "perplexity")
    if cfg.min_accuracy is not None:
        checks.append(_check("min_accuracy", "candidate accuracy", cand_acc, cfg.min_accuracy, ">="))
    if cfg.max_accuracy_drop is not None:
        drop = None if base_acc is None or cand_acc is None else base_acc - cand_acc
        checks.append(_check("max_accuracy_drop", "accuracy drop vs baseline", drop, cfg.max_accuracy_drop, "<="))
    if cfg.max_perplexity_ratio is not None:
        ratio = None if base_ppl is None or cand_ppl is None else cand_ppl / base_ppl
        checks.append(_check("max_perplexity_ratio", "perplexity ratio candidate/baseline", ratio, cfg.max_perplexity_ratio, "<="))
    reasons.extend(c.message for c in checks if not c.passed)
    return GateDecision(passed=not reasons, reasons=reasons, checks=checks)
