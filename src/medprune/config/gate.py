"""The `gate` section: thresholds, critical items and the non-inferiority test."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medprune.config._base import _Strict

#: Metrics the gate knows, and whether higher is better. ``accuracy_<category>`` metrics
#: exist too (see ``GateConfig.category_floors``), and ``METRIC@SOURCE`` for every metric of
#: :data:`SOURCE_METRICS` and every ``evaluate.mcq_sources`` name (``accuracy@pubmedqa``).
GATE_METRICS: dict[str, bool] = {
    "accuracy": True,
    "accuracy_norm": True,
    "macro_f1": True,
    "rouge1": True,
    "rouge2": True,
    "rougeLsum": True,
    "section_coverage": True,
    "hallucination_rate": False,
    "omission_rate": False,
    "judge_overall": True,
    "judge_faithfulness": True,
    "judge_completeness": True,
    "judge_harm_free": True,
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


#: Metrics every multiple-choice source has, as ``METRIC@SOURCE``.
SOURCE_METRICS = ("accuracy", "accuracy_norm", "macro_f1")

#: Per-item scores a paired non-inferiority test can compare: MCQ correctness, or a
#: visit-note score (``faithfulness`` = 1 - hallucination rate, ``completeness`` = 1 -
#: omission rate).
ITEM_SCORES = (
    "acc",
    "acc_norm",
    "rouge1",
    "rouge2",
    "rougeLsum",
    "section_coverage",
    "faithfulness",
    "completeness",
)
MCQ_ITEM_SCORES = ("acc", "acc_norm")


def metric_direction(name: str) -> bool | None:
    """Whether higher is better for a gate metric name (``accuracy@pubmedqa`` too); None
    when the gate does not know it."""
    if name in GATE_METRICS:
        return GATE_METRICS[name]
    base, at, source = name.partition("@")
    if at and source and base in SOURCE_METRICS:
        return GATE_METRICS[base]
    return None


def _check_metric_map(
    v: dict[str, float], field: str, *, direction: bool | None = None
) -> dict[str, float]:
    for name, value in v.items():
        if metric_direction(name) is None:
            raise ValueError(
                f"{field}: unknown metric {name!r}; known metrics are {sorted(GATE_METRICS)} and "
                f"{list(SOURCE_METRICS)} of a source as METRIC@SOURCE"
            )
        if direction is not None and metric_direction(name) is not direction:
            other = "max_increase" if direction else "max_drop"
            raise ValueError(
                f"{field}: {name!r} is better when {'lower' if direction else 'higher'}; use gate.{other} for it"
            )
        if value < 0:
            raise ValueError(f"{field}.{name}: must be >= 0, got {value}")
    return v


class NonInferiorityConfig(_Strict):
    margin: float = Field(
        gt=0, lt=1, description="Largest accuracy loss accepted as 'not worse' (0.05 = 5 points)."
    )
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="Two-sided confidence level of the interval for (candidate - baseline) accuracy.",
    )
    method: Literal["bootstrap", "mcnemar"] = Field(
        default="bootstrap",
        description="Paired bootstrap (percentile) or exact McNemar (conditional Clopper-Pearson) interval.",
    )
    n_resamples: int = Field(default=2000, ge=100, le=1_000_000, description="Bootstrap resamples.")
    seed: int = Field(
        default=0, ge=0, description="Bootstrap random seed (results are reproducible)."
    )
    metric: Literal[
        "acc",
        "acc_norm",
        "rouge1",
        "rouge2",
        "rougeLsum",
        "section_coverage",
        "faithfulness",
        "completeness",
    ] = Field(
        default="acc",
        description="Which per-item score to compare: MCQ correctness (acc, acc_norm) or, for visit notes, "
        "rouge1 / rouge2 / rougeLsum / section_coverage / faithfulness (1 - hallucination rate) / "
        "completeness (1 - omission rate).",
    )
    min_items: int = Field(
        default=30,
        ge=1,
        description="Fewer paired items than this fail the check: the interval would say little.",
    )


class GateConfig(_Strict):
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Candidate accuracy floor."
    )
    max_accuracy_drop: float | None = Field(
        default=None, ge=0, le=1, description="Largest allowed (baseline - candidate) accuracy."
    )
    max_perplexity_ratio: float | None = Field(
        default=None, gt=0, description="Largest allowed candidate / baseline perplexity."
    )
    floors: dict[str, float] = Field(
        default_factory=dict,
        description="Candidate metric >= value, e.g. {accuracy: 0.6, rouge_l: 0.3}.",
    )
    ceilings: dict[str, float] = Field(
        default_factory=dict,
        description="Candidate metric <= value, e.g. {perplexity: 20, latency_ms_p95: 250}.",
    )
    max_drop: dict[str, float] = Field(
        default_factory=dict,
        description="Largest allowed (baseline - candidate) for higher-is-better metrics, e.g. {rouge_l: 0.02}.",
    )
    max_increase: dict[str, float] = Field(
        default_factory=dict,
        description="Largest allowed (candidate - baseline) for lower-is-better metrics, e.g. {perplexity: 1.5}.",
    )
    category_floors: dict[str, float] = Field(
        default_factory=dict,
        description="Candidate accuracy floor per MCQ category, e.g. {dosing: 0.8}; '*' applies to every category.",
    )
    critical_items: list[str] = Field(
        default_factory=list,
        description="MCQ item ids the candidate may not get wrong where the baseline got them right.",
    )
    non_inferiority: NonInferiorityConfig | None = Field(
        default=None, description="Paired non-inferiority test of candidate vs baseline accuracy."
    )
    source_non_inferiority: dict[str, NonInferiorityConfig] = Field(
        default_factory=dict,
        description="A paired non-inferiority test per source, each its own check: an evaluate.mcq_sources "
        "name (metric acc or acc_norm) or 'visit_notes' (a per-note score, e.g. rougeLsum or faithfulness).",
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

    @field_validator("non_inferiority")
    @classmethod
    def _mcq_score(cls, v: NonInferiorityConfig | None) -> NonInferiorityConfig | None:
        if v is not None and v.metric not in MCQ_ITEM_SCORES:
            raise ValueError(
                f"gate.non_inferiority.metric: {v.metric!r} is a visit-note score; gate.non_inferiority compares "
                f"evaluate.mcq correctness ({list(MCQ_ITEM_SCORES)}); use gate.source_non_inferiority.visit_notes"
            )
        return v

    @field_validator("source_non_inferiority")
    @classmethod
    def _source_scores(cls, v: dict[str, NonInferiorityConfig]) -> dict[str, NonInferiorityConfig]:
        for name, ni in v.items():
            notes = name == "visit_notes"
            if notes and ni.metric in MCQ_ITEM_SCORES:
                raise ValueError(
                    f"gate.source_non_inferiority.visit_notes.metric: {ni.metric!r} is a multiple-choice score; "
                    f"use one of {[m for m in ITEM_SCORES if m not in MCQ_ITEM_SCORES]}"
                )
            if not notes and ni.metric not in MCQ_ITEM_SCORES:
                raise ValueError(
                    f"gate.source_non_inferiority.{name}.metric: {ni.metric!r} is a visit-note score; "
                    f"a multiple-choice source compares {list(MCQ_ITEM_SCORES)}"
                )
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
