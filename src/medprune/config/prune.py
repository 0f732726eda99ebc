"""The `prune` section: method, sparsity, pattern and the methods' own settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict


class CalibrationConfig(_Strict):
    data: str | None = Field(default=None, description="JSONL of {text} used to calibrate pruning.")
    data_source: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9+_.:-]{0,79}$",
        description="Where the calibration text comes from (data card source); default: the card beside "
        "the file, else user:<file stem>. A name that contradicts the card is an error.",
    )
    num_samples: int = Field(default=64, ge=1, description="Number of calibration sequences.")
    seq_len: int = Field(default=256, ge=8, description="Tokens per calibration sequence.")
    batch_size: int = Field(
        default=8, ge=1, description="Calibration sequences per layer forward pass while pruning."
    )
    passes: Literal[1, 2] = Field(
        default=1,
        description="Wanda/SparseGPT: forward passes per decoder layer. 1: each sub-layer is "
        "computed once, with the linears before it already pruned (fastest; holds the "
        "activations of one sub-layer for all calibration tokens). 2: statistics from the "
        "dense layer, then the pruned layer runs again to make the next layer's inputs "
        "(holds only the hidden states: for small models or large calibration sets on a "
        "tight memory budget).",
    )


class SparseGPTConfig(_Strict):
    blocksize: int = Field(default=128, ge=1, description="Columns updated together (lazy batch).")
    dampening: float = Field(
        default=0.01, gt=0, lt=1, description="Added to the Hessian diagonal, times its mean."
    )


class AllocationConfig(_Strict):
    kind: Literal["uniform", "owl"] = Field(
        default="uniform",
        description="'uniform': every layer gets prune.sparsity; 'owl': outlier-weighted layerwise "
        "sparsity (unstructured only), mean over layers = prune.sparsity.",
    )
    owl_threshold: float = Field(
        default=5.0,
        gt=0,
        description="OWL: a weight is an outlier if its Wanda score > this x mean.",
    )
    owl_lambda: float = Field(
        default=0.08,
        ge=0,
        lt=0.5,
        description="OWL: layer sparsities span prune.sparsity +/- this.",
    )


class StructuredConfig(_Strict):
    """Settings of the structured methods ``width`` and ``depth``.

    ``width``: unless explicit sizes are given, ``prune.sparsity`` is the fraction of all model
    parameters to remove. ``depth``: unless ``layers_to_remove`` is given, ``prune.sparsity``
    is the fraction of decoder layers to remove.
    """

    head_mode: Literal["query_heads", "kv_groups"] = Field(
        default="query_heads",
        description="GQA-aware head removal: 'query_heads' removes the same number of query "
        "heads in every key/value group; 'kv_groups' removes whole key/value groups.",
    )
    prune_attention: bool = Field(default=True, description="width: remove attention heads.")
    prune_mlp: bool = Field(default=True, description="width: remove MLP intermediate channels.")
    prune_hidden: bool = Field(
        default=False, description="width: also remove hidden (embedding) channels."
    )
    num_attention_heads: int | None = Field(default=None, ge=1, description="width: heads to keep.")
    num_key_value_heads: int | None = Field(
        default=None, ge=1, description="width: key/value heads to keep (kv_groups mode)."
    )
    intermediate_size: int | None = Field(
        default=None, ge=1, description="width: MLP size to keep."
    )
    hidden_size: int | None = Field(default=None, ge=1, description="width: hidden size to keep.")
    channel_multiple: int = Field(
        default=32,
        ge=1,
        description="width: kept MLP/hidden sizes are rounded to a multiple of this.",
    )
    plan_search: bool = Field(
        default=True,
        description="width with prune.sparsity: try every allowed head count (the MLP size then "
        "fills the parameter target) and keep the split whose pruned layers best reproduce the "
        "dense layers' outputs on the calibration data; off: remove the same fraction of heads "
        "and MLP channels. Not used with explicit sizes or prune_hidden.",
    )
    layers_to_remove: list[int] | None = Field(
        default=None, description="depth: explicit decoder layer indices to remove (0-based)."
    )

    @field_validator("layers_to_remove")
    @classmethod
    def _unique_layers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(set(v)) != len(v) or any(i < 0 for i in v)):
            raise ValueError(f"must be distinct non-negative layer indices, got {v}")
        return v


class PruneConfig(_Strict):
    method: str = Field(
        default="magnitude",
        description="Pruning method: magnitude, wanda, sparsegpt (unstructured or N:M), "
        "width, depth (structured).",
    )
    sparsity: float = Field(
        default=0.5, description="Target fraction of zero weights in the pruned layers, in [0, 1)."
    )
    pattern: str = Field(
        default="unstructured", description="'unstructured' or 'N:M' (for example '2:4')."
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["lm_head", "embed_tokens"],
        description="Module-name substrings never pruned (embeddings and lm_head by default).",
    )
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    sparsegpt: SparseGPTConfig = Field(default_factory=SparseGPTConfig)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    structured: StructuredConfig = Field(default_factory=StructuredConfig)

    @field_validator("sparsity")
    @classmethod
    def _sparsity_range(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"must be in [0, 1), got {v}")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern_form(cls, v: str) -> str:
        if v == "unstructured":
            return v
        m = re.fullmatch(r"(\d+):(\d+)", v)
        if not m:
            raise ValueError(f"must be 'unstructured' or 'N:M' like '2:4', got {v!r}")
        n, mm = int(m.group(1)), int(m.group(2))
        if not 0 < n < mm:
            raise ValueError(f"N:M needs 0 < N < M, got {v!r}")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> PruneConfig:
        if self.allocation.kind == "owl":
            if self.pattern != "unstructured":
                raise ValueError(
                    f"prune.allocation.kind='owl' needs prune.pattern='unstructured', got {self.pattern!r}"
                )
            lam = self.allocation.owl_lambda
            if not (self.sparsity - lam >= 0.0 and self.sparsity + lam < 1.0):
                raise ValueError(
                    f"prune.allocation.owl_lambda={lam} takes layer sparsities outside [0, 1) around "
                    f"prune.sparsity={self.sparsity}; allowed: lambda <= min(sparsity, 1 - sparsity)"
                )
        if self.method in ("width", "depth"):
            if self.pattern != "unstructured":
                raise ValueError(
                    f"prune.pattern={self.pattern!r} does not apply to structured method "
                    f"{self.method!r}; use 'unstructured'"
                )
            if self.allocation.kind != "uniform":
                raise ValueError(
                    f"prune.allocation.kind must be 'uniform' for method {self.method!r}"
                )
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        if self.pattern == "unstructured":
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)
