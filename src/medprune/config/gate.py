"""The `gate` section: thresholds, critical items and the non-inferiority test."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medprune.config._base import _Strict


#: Metrics the gate knows, and whether higher is better. ``accuracy_<category>`` metrics
#: exist too (see ``GateConfig.category_floors``).
GATE_METRICS: dict[str, bool] = {
    "accuracy": True,
    "accuracy_norm": True,
    "rouge_l": True,
    "exact_match": True,
    "tokens_per_s": True,
    "perplexity": False,
    "bits_per_byte": False,
    "latency_ms_p50": False,
    "latency_ms_p95": False,
    "size_bytes": False,
    "nonzero_params": False,
    "peak_memory_bytes": False,
}


def _check_metric_map(v: dict[str, float], field: str, *, direction: bool | None = None) -> dict[str, float]:
    for name, value in v.items():
        if name not in GATE_METRICS:
            raise ValueError(f"{field}: unknown metric {name!r}; known metrics are {sorted(GATE_METRICS)}")
        if direction is not None and GATE_METRICS[name] is not direction:
            other = "max_increase" if direction else "max_drop"
            raise ValueError(f"{field}: {name!r} is better when {'lower' if direction else 'higher'}; use gate.{other} for it")
        if value < 0:
            raise ValueError(f"{field}.{name}: must be >= 0, got {value}")
    return v


class NonInferiorityConfig(_Strict):
    margin: float = Field(
        gt=0, lt=1, description="Largest accuracy loss accepted as 'not worse' (0.05 = 5 points)."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Two-sided confidence level of the interval for (candidate - baseline) accuracy."
    )
    method: Literal["bootstrap", "mcnemar"] = Field(
        default="bootstrap", description="Paired bootstrap (percentile) or exact McNemar (conditional Clopper-Pearson) interval."
    )
    n_resamples: int = Field(default=2000, ge=100, le=1_000_000, description="Bootstrap resamples.")
    seed: int = Field(default=0, ge=0, description="Bootstrap random seed (results are reproducible).")
    metric: Literal["acc", "acc_norm"] = Field(default="acc", description="Which per-item correctness to compare.")
    min_items: int = Field(
        default=30, ge=1, description="Fewer paired items than this fail the check: the interval would say little."
    )


class GateConfig(_Strict):
    min_accuracy: float | None = Field(default=None, ge=0, le=1, description="Candidate accuracy floor.")
    max_accuracy_drop: float | None = Field(
        default=None, ge=0, le=1, description="Largest allowed (baseline - candidate) accuracy."
    )
    max_perplexity_ratio: float | None = Field(
        default=None, gt=0, description="Largest allowed candidate / baseline perplexity."
    )
    floors: dict[str, float] = Field(
        default_factory=dict, description="Candidate metric >= value, e.g. {accuracy: 0.6, rouge_l: 0.3}."
    )
    ceilings: dict[str, float] = Field(
        default_factory=dict, description="Candidate metric <= value, e.g. {perplexity: 20, latency_ms_p95: 250}."
    )
    max_drop: dict[str, float] = Field(
        default_factory=dict, description="Largest allowed (baseline - candidate) for higher-is-better metrics, e.g. {rouge_l: 0.02}."
    )
    max_increase: dict[str, float] = Field(
        default_factory=dict, description="Largest allowed (candidate - baseline) for lower-is-better metrics, e.g. {perplexity: 1.5}."
    )
    category_floors: dict[str, float] = Field(
        default_factory=dict, description="Candidate accuracy floor per MCQ category, e.g. {dosing: 0.8}; '*' applies to every category."
    )
    critical_items: list[str] = Field(
        default_factory=list, description="MCQ item ids the candidate may not get wrong where the baseline got them right."
    )
    non_inferiority: NonInferiorityConfig | None = Field(
        default=None, description="Paired non-inferiority test of candidate vs baseline accuracy."
    )

    @field_validator("floors", "ceilings")
    @classmethod
    def _known_metrics(cls, v: dict[str, float], info) -> dict[str, float]:
        return _check_metric_map(v, f"gate.{info.field_name}")

    @field_validator("max_drop")
    @classmethod
    def _drop_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_metric_map(v, "gate.max_drop", direction=True)

    @field_validator("max_increase")
    @classmethod
    def _increase_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_metric_map(v, "gate.max_increase", direction=False)

    @field_validator("category_floors")
    @classmethod
    def _category_range(cls, v: dict[str, float]) -> dict[str, float]:
        for cat, value in v.items():
            if not 0 <= value <= 1:
                raise ValueError(f"gate.category_floors.{cat}: must be in [0, 1], got {value}")
        return v

    @field_validator("critical_items")
    @classmethod
    def _ids_unique(cls, v: list[str]) -> list[str]:
        dup = sorted({i for i in v if v.count(i) > 1})
        if dup:
            raise ValueError(f"gate.critical_items: duplicate ids {dup}")
        if any(not i.strip() for i in v):
            raise ValueError("gate.critical_items: ids must be non-empty")
        return v
