"""The whole run: :class:`RunConfig`, one field per section."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError, model_validator

from medprune.config._base import _Strict
from medprune.config.evaluate import EvaluateConfig
from medprune.config.gate import GateConfig
from medprune.config.model import ModelConfig
from medprune.config.pipeline import PipelineConfig
from medprune.config.prune import PruneConfig
from medprune.config.recover import RecoverConfig
from medprune.config.registry import RegistryConfig
from medprune.config.search import SearchConfig
from medprune.config.serve import ServeConfig
from medprune.config.validation import YamlSurprise, format_validation_errors
from medprune.config.vertex import VertexConfig
from medprune.errors import ConfigError


class RunConfig(_Strict):
    run_name: str = Field(default="medprune", pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")
    output_dir: str = Field(default="runs", description="Runs are written to OUTPUT_DIR/RUN_ID.")
    seed: int = Field(default=0, ge=0)
    model: ModelConfig
    prune: PruneConfig = Field(default_factory=PruneConfig)
    recover: RecoverConfig = Field(default_factory=RecoverConfig)
    evaluate: EvaluateConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    serve: ServeConfig = Field(
        default_factory=ServeConfig,
        description="Serving: GGUF/Ollama export and Vertex AI endpoints (medprune export / deploy).",
    )
    vertex: VertexConfig | None = Field(
        default=None, description="Vertex AI settings; required when registry.target is 'vertex'."
    )
    search: SearchConfig | None = Field(
        default=None,
        description="`medprune search`: the candidates to try and how the winner is certified.",
    )

    @model_validator(mode="after")
    def _vertex_target_needs_vertex(self) -> RunConfig:
        if self.registry.target == "vertex" and self.vertex is None:
            raise ValueError("registry.target is 'vertex' but the 'vertex' section is missing")
        if self.search is not None and self.gate.non_inferiority is None:
            raise ValueError(
                "search needs gate.non_inferiority (its margin is what the search certifies against); "
                "add gate.non_inferiority.margin"
            )
        return self

    @model_validator(mode="after")
    def _gate_sources_are_evaluated(self) -> RunConfig:
        sources = {s.name for s in self.evaluate.mcq_sources}
        for source in self.gate.source_non_inferiority:
            if source == "visit_notes" and self.evaluate.visit_notes is None:
                raise ValueError(
                    "gate.source_non_inferiority.visit_notes: evaluate.visit_notes is not set"
                )
            if source != "visit_notes" and source not in sources:
                raise ValueError(
                    f"gate.source_non_inferiority.{source}: no evaluate.mcq_sources entry named {source!r} "
                    f"(sources: {sorted(sources)})"
                )
        gated = [
            *self.gate.floors,
            *self.gate.ceilings,
            *self.gate.max_drop,
            *self.gate.max_increase,
        ]
        for metric in gated:
            _, at, source = metric.partition("@")
            if at and source not in sources:
                raise ValueError(
                    f"gate: metric {metric!r} names source {source!r}, which is not in evaluate.mcq_sources "
                    f"(sources: {sorted(sources)})"
                )
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def validated(
        cls,
        data: Any,
        origin: str = "<config>",
        surprises: dict[str, YamlSurprise] | None = None,
    ) -> RunConfig:
        """``data`` validated; a :class:`ConfigError` naming each bad field otherwise."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: top level must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_errors(exc, origin, surprises)) from None

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.validated(json.loads(text), origin="<json>")
