"""The `search` section: which pruned models `medprune search` tries, how cheaply it
judges them, how much it may spend, and how the winner is certified.

The search returns the most compressed candidate that passes the gate on clinical items it
never looked at while searching (the certification set), with the chance of certifying a
candidate that is really worse than ``gate.non_inferiority.margin`` at most ``alpha``.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict
from medprune.config.pipeline import ResourceConfig

#: What an axis varies: ``width``/``depth`` remove a share of parameters / decoder layers,
#: ``unstructured`` zeroes a share of each pruned matrix, ``nm`` keeps N of every M weights.
AXIS_KINDS = ("width", "depth", "unstructured", "nm")
UNSTRUCTURED_METHODS = ("magnitude", "wanda", "sparsegpt")

#: What "smaller" means, and whether the measured value is better when lower.
OBJECTIVES: dict[str, bool] = {
    "params": True,
    "nonzero_params": True,
    "size_bytes": True,
    "latency_ms_p50": True,
    "tokens_per_s": False,
}


class AxisRange(_Strict):
    min: float = Field(description="Smallest value (least compressed).")
    max: float = Field(description="Largest value (most compressed).")
    step: float = Field(gt=0, description="Spacing of the values tried between min and max.")

    @model_validator(mode="after")
    def _ordered(self) -> AxisRange:
        if self.max < self.min:
            raise ValueError(
                f"range max ({self.max}) is below min ({self.min}): the axis would be empty"
            )
        return self

    def values(self) -> list[float]:
        n = math.floor((self.max - self.min) / self.step + 1e-9)
        return [round(self.min + i * self.step, 6) for i in range(n + 1)]


class AxisConfig(_Strict):
    """One direction of compression. Values grow with compression (a monotone axis)."""

    name: str | None = Field(
        default=None, description="Label used by combos and in the report; default: kind."
    )
    kind: Literal["width", "depth", "unstructured", "nm"]
    method: str | None = Field(
        default=None,
        description="unstructured / nm: magnitude, wanda or sparsegpt (default wanda). Not used by width/depth.",
    )
    values: list[float] | None = Field(
        default=None, description="Explicit values (shares in (0, 1))."
    )
    range: AxisRange | None = Field(
        default=None, description="Or evenly spaced values: {min, max, step}."
    )
    patterns: list[str] | None = Field(
        default=None, description="nm: the N:M patterns to try, e.g. ['2:4', '4:8']."
    )
    allocation: Literal["uniform", "owl"] | None = Field(
        default=None,
        description="unstructured: per-layer allocation; default 'owl' (outlier-weighted, which kept "
        "more accuracy than uniform sparsity at equal size in the OWL paper).",
    )

    @field_validator("name")
    @classmethod
    def _name_form(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z][a-z0-9_\-]{0,30}", v):
            raise ValueError(
                f"must be lower-case letters, digits, '_' or '-' (<= 31 chars), got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _values_fit_kind(self) -> AxisConfig:
        label = self.name or self.kind
        if self.kind in ("unstructured", "nm"):
            method = self.method or "wanda"
            if method not in UNSTRUCTURED_METHODS:
                raise ValueError(
                    f"axis {label!r}: method {method!r} cannot make {self.kind} sparsity; allowed: {list(UNSTRUCTURED_METHODS)}"
                )
        elif self.method is not None:
            raise ValueError(
                f"axis {label!r}: method applies to unstructured/nm axes only; {self.kind} uses its own method"
            )
        if self.kind == "nm":
            if self.values is not None or self.range is not None:
                raise ValueError(
                    f"axis {label!r}: an nm axis takes patterns (e.g. ['2:4']), not values or range"
                )
            if not self.patterns:
                raise ValueError(f"axis {label!r}: an nm axis needs patterns, e.g. ['2:4', '4:8']")
            for p in self.patterns:
                m = re.fullmatch(r"(\d+):(\d+)", p)
                if not m or not 0 < int(m.group(1)) < int(m.group(2)):
                    raise ValueError(
                        f"axis {label!r}: pattern {p!r} is not N:M with 0 < N < M (e.g. '2:4')"
                    )
            if len(set(self.patterns)) != len(self.patterns):
                raise ValueError(f"axis {label!r}: duplicate patterns {self.patterns}")
            if self.allocation == "owl":
                raise ValueError(
                    f"axis {label!r}: owl allocation needs unstructured sparsity, not N:M"
                )
            return self
        if self.patterns is not None:
            raise ValueError(f"axis {label!r}: patterns apply to nm axes only")
        if (self.values is None) == (self.range is None):
            raise ValueError(f"axis {label!r}: give exactly one of values or range")
        if self.allocation is not None and self.kind != "unstructured":
            raise ValueError(f"axis {label!r}: allocation applies to unstructured axes only")
        vals = self.values if self.values is not None else self.range.values()  # type: ignore[union-attr]
        if not vals:
            raise ValueError(f"axis {label!r}: no values")
        bad = [v for v in vals if not 0 < v < 1]
        if bad:
            what = {
                "width": "share of parameters removed",
                "depth": "share of layers removed",
                "unstructured": "sparsity",
            }[self.kind]
            raise ValueError(f"axis {label!r}: values {bad} are not a {what} in (0, 1)")
        if len(set(vals)) != len(vals):
            raise ValueError(
                f"axis {label!r}: duplicate values {sorted(v for v in set(vals) if vals.count(v) > 1)}"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or self.kind

    def points(self) -> list[float | str]:
        """The axis's values, least to most compressed (nm: patterns by sparsity 1 - N/M)."""
        if self.kind == "nm":
            patterns: list[str] = sorted(
                self.patterns or [], key=lambda p: 1 - int(p.split(":")[0]) / int(p.split(":")[1])
            )
            return list(patterns)
        assert self.values is not None or self.range is not None
        return list(sorted(self.values if self.values is not None else self.range.values()))  # type: ignore[union-attr]


class RungConfig(_Strict):
    """One fidelity level of successive halving."""

    items: int | None = Field(
        default=None,
        ge=1,
        description="Search-set items a candidate is scored on at this rung (default: all of them).",
    )
    recover_steps: int = Field(
        default=0,
        ge=0,
        description="Recovery steps added at this rung (continuing the previous rung's model); 0: none.",
    )
    recover_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Recovery time limit at this rung (recover.budget_clock says wall or CPU).",
    )
    ppl_texts: int = Field(
        default=0, ge=0, description="Perplexity texts evaluated at this rung (0: skip perplexity)."
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="A candidate stays in the race while its accuracy difference to the dense model on this "
        "rung's items is >= -(margin + tolerance): room for what later recovery wins back.",
    )


def _default_rungs() -> list[RungConfig]:
    return [
        RungConfig(items=60, recover_steps=0, tolerance=0.12),
        RungConfig(items=150, recover_steps=10, tolerance=0.05),
        RungConfig(items=None, recover_steps=30, tolerance=0.02),
    ]


class SearchBudget(_Strict):
    candidates: int = Field(
        default=24, ge=1, description="Most distinct candidates pruned (rung 0 evaluations)."
    )
    cpu_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Stop starting new candidates once the search has used this much process CPU time; "
        "the survivors' recovery at later rungs shares what is left (none once it is spent).",
    )


class KLConfig(_Strict):
    texts: int = Field(
        default=8,
        ge=1,
        description="Calibration texts on which rung 0 measures KL(dense || candidate).",
    )
    seq_len: int = Field(default=128, ge=8, description="Tokens per text for the KL measurement.")


_STRATA: tuple[Literal["category", "source"], ...] = ("category", "source")


class CertificationConfig(_Strict):
    file: str | None = Field(
        default=None,
        description="A separate MCQ file used only to certify (local or gs://); default: split evaluate.mcq.",
    )
    fraction: float = Field(
        default=0.4,
        gt=0,
        lt=1,
        description="Share of evaluate.mcq items set aside for certification (when file is unset).",
    )
    stratify_by: list[Literal["category", "source"]] = Field(
        default_factory=lambda: list(_STRATA),
        description="Item fields whose combinations are split in proportion.",
    )
    rare_strata: Literal["error", "pool"] = Field(
        default="error",
        description="A stratum with one item cannot be split: 'error' stops with its name; 'pool' joins the "
        "strata with fewer than 2 items of each source into one stratum per source.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the deterministic split.")
    method: Literal["mcnemar", "bootstrap"] = Field(
        default="mcnemar",
        description="Interval of the certification test: exact McNemar (the level-alpha guarantee is exact) "
        "or the paired bootstrap (approximate).",
    )
    assumed_discordance: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="Share of items the models answer differently, assumed before any candidate is measured "
        "to check the certification set can detect the margin; rung 0's observed share replaces it.",
    )
    max_candidates: int = Field(
        default=4,
        ge=1,
        description="Most candidates tested in sequence (the final rung's best, least to most compressed).",
    )


class SearchConfig(_Strict):
    axes: list[AxisConfig] = Field(description="The directions of compression to explore.")
    combos: list[list[str]] = Field(
        default_factory=list,
        description="Pairs of axis names applied one after the other, e.g. [width, unstructured]: "
        "structured first, then sparsity on the smaller model.",
    )
    objective: Literal[
        "params", "nonzero_params", "size_bytes", "latency_ms_p50", "tokens_per_s"
    ] = Field(
        default="params",
        description="What 'smaller' means: parameters, non-zero parameters, size on disk, latency or tokens/s.",
    )
    rungs: list[RungConfig] = Field(
        default_factory=_default_rungs, description="Fidelity levels, cheapest first."
    )
    eta: float = Field(
        default=3.0,
        gt=1,
        description="Successive halving keeps 1/eta of the candidates at each rung.",
    )
    bisect: bool = Field(
        default=True,
        description="Along each monotone axis, bisect for the most compressed value that stays in the race "
        "at rung 0 instead of trying every value.",
    )
    max_step_share: float = Field(
        default=1 / 3,
        gt=0,
        lt=1,
        description="Bisection first probes the largest structured value <= this share (Minitron, Sheared-LLaMA: "
        "about a third of the parameters per step without recovery).",
    )
    budget: SearchBudget = Field(default_factory=SearchBudget)
    kl: KLConfig = Field(default_factory=KLConfig)
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Chance of certifying a candidate really worse than the margin.",
    )
    power: float = Field(
        default=0.8,
        ge=0.5,
        lt=1,
        description="Wanted chance of certifying a candidate exactly as good as the dense model.",
    )
    certification: CertificationConfig = Field(default_factory=CertificationConfig)
    cache_dir: str | None = Field(
        default=None,
        description="Pruned, recovered and evaluated candidates are kept here under a hash of their settings, "
        "so a rerun or a resumed search reuses them (local, /gcs/... or gs://, read through the Cloud Storage FUSE "
        "mount); default OUTPUT_DIR/search-cache.",
    )
    parallelism: int = Field(
        default=0, ge=0, description="Candidates of one round run at once on Vertex (0: no limit)."
    )
    candidate_resources: ResourceConfig = Field(
        default_factory=lambda: ResourceConfig(cpu="8", memory="64G", accelerator_type="NVIDIA_L4"),
        description="Machine of each candidate branch (prune, recover, evaluate) on Vertex.",
    )

    @field_validator("axes")
    @classmethod
    def _axes_present(cls, v: list[AxisConfig]) -> list[AxisConfig]:
        if not v:
            raise ValueError(
                "the search space is empty: give at least one axis (width, depth, unstructured or nm)"
            )
        labels = [a.label for a in v]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"axis names {dup} are used twice; give each axis a distinct name")
        return v

    @field_validator("rungs")
    @classmethod
    def _rungs_grow(cls, v: list[RungConfig]) -> list[RungConfig]:
        if not v:
            raise ValueError("need at least one rung")
        sizes = [r.items if r.items is not None else math.inf for r in v]
        if any(b < a for a, b in itertools.pairwise(sizes)):
            raise ValueError(
                f"rung items must not shrink from one rung to the next, got {[r.items for r in v]}"
            )
        if any(r.items is None for r in v[:-1]) and v[-1].items is not None:
            raise ValueError("only the last rungs may use all items (items: null)")
        return v

    @model_validator(mode="after")
    def _combos_and_budget(self) -> SearchConfig:
        by_label = {a.label: a for a in self.axes}
        for combo in self.combos:
            if len(combo) != 2:
                raise ValueError(
                    f"combo {combo}: a combo names exactly two axes, e.g. [width, unstructured]"
                )
            missing = [c for c in combo if c not in by_label]
            if missing:
                raise ValueError(
                    f"combo {combo}: unknown axis {missing}; axes are {sorted(by_label)}"
                )
            first, second = (by_label[c] for c in combo)
            if first.kind not in ("width", "depth") or second.kind not in ("unstructured", "nm"):
                raise ValueError(
                    f"combo {combo}: must be a structured axis (width/depth) then a sparsity axis "
                    f"(unstructured/nm), got {first.kind} then {second.kind}"
                )
        if len({tuple(c) for c in self.combos}) != len(self.combos):
            raise ValueError(f"combos repeat: {self.combos}")
        final = self.rungs[-1]
        cpu = self.budget.cpu_minutes
        if cpu is not None and final.recover_minutes is not None and cpu < final.recover_minutes:
            raise ValueError(
                f"budget.cpu_minutes={cpu} cannot pay for one candidate's final-rung recovery "
                f"(rungs[-1].recover_minutes={final.recover_minutes}); allowed: >= {final.recover_minutes}"
            )
        return self
