"""The `serve` section: how a registered model is served (GGUF/Ollama export, Vertex AI
endpoints with canary rollout, multi-region)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict

_KMS = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_BUCKET = re.compile(r"^gs://[a-z0-9][a-z0-9_.\-]{1,220}[a-z0-9](/.*)?$")


class GGUFExportConfig(_Strict):
    outtypes: list[Literal["f32", "f16", "bf16", "q8_0"]] = Field(
        default=["f16", "q8_0"],  # pydantic copies mutable defaults per instance
        description="GGUF weight types written (one file each); norms stay float32.",
    )


class OllamaConfig(_Strict):
    system_prompt: str | None = Field(
        default=(
            "You are a clinical documentation assistant. Summarise and answer only from the "
            "text you are given; say when the text does not contain the answer."
        ),
        description="SYSTEM line of the Modelfile (null for none).",
    )
    num_ctx: int | None = Field(
        default=None,
        ge=128,
        description="Context length (PARAMETER num_ctx); default and ceiling: the model's max_position_embeddings.",
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="PARAMETER temperature.")
    quantization: Literal["f32", "f16", "bf16", "q8_0"] = Field(
        default="q8_0", description="Which exported GGUF the Modelfile's FROM line names."
    )
    template: str | None = Field(
        default=None,
        description="Ollama Go TEMPLATE for models whose chat template is not ChatML or Llama 3.",
    )
    stop: list[str] = Field(
        default_factory=list, description="Extra stop strings (PARAMETER stop)."
    )


class RegionConfig(_Strict):
    """One region of a multi-regional deployment."""

    location: str = Field(description="Vertex AI region, e.g. europe-west4.")
    staging_bucket: str = Field(
        description="gs://BUCKET in that region; the model files are copied here."
    )
    encryption_spec_key_name: str | None = Field(
        default=None,
        description="CMEK key in that region (Vertex AI needs a key in the resource's own "
        "region). Required when the vertex section uses CMEK and this is another region.",
    )

    @field_validator("staging_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v):
            raise ValueError(f"must be gs://BUCKET[/PREFIX], got {v!r}")
        return v.rstrip("/")

    @field_validator("encryption_spec_key_name")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not _KMS.match(v):
            raise ValueError(f"must be projects/P/locations/L/keyRings/R/cryptoKeys/K, got {v!r}")
        return v

    @model_validator(mode="after")
    def _key_in_region(self) -> RegionConfig:
        if self.encryption_spec_key_name:
            key_location = self.encryption_spec_key_name.split("/")[3]
            if key_location not in (self.location, "global"):
                raise ValueError(
                    f"encryption_spec_key_name is in {key_location!r} but the region is "
                    f"{self.location!r}; Vertex AI needs a key in the resource's region"
                )
        return self


class EndpointConfig(_Strict):
    """A Vertex AI online prediction endpoint and how versions are rolled out to it."""

    display_name: str | None = Field(
        default=None, description="Endpoint display name; default MODEL_NAME-endpoint."
    )
    machine_type: str = Field(default="g2-standard-8", description="Serving machine type.")
    accelerator_type: str | None = Field(
        default="NVIDIA_L4", description="Accelerator (null for CPU-only serving)."
    )
    accelerator_count: int = Field(default=1, ge=0)
    min_replica_count: int = Field(default=1, ge=1)
    max_replica_count: int = Field(default=2, ge=1)
    canary_traffic_percent: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Share of traffic a newly deployed version takes beside the production one.",
    )
    service_account: str | None = Field(
        default=None, description="Service account the serving container runs as."
    )
    network: str | None = Field(
        default=None,
        description="Private endpoint through Private Service Connect (PSC), reached from this "
        "VPC: projects/PROJECT/global/networks/NAME (a PSC automation config creates the "
        "forwarding rule in it). Not VPC Network Peering: a peered (PSA) private endpoint "
        "holds one deployed model and no traffic split, so no canary. Unset: a public endpoint.",
    )
    regions: list[RegionConfig] = Field(
        default_factory=list,
        description="Multi-regional: register and deploy in each of these regions (the vertex "
        "section's region is used alone when this is empty).",
    )

    @model_validator(mode="after")
    def _replicas(self) -> EndpointConfig:
        if self.max_replica_count < self.min_replica_count:
            raise ValueError(
                f"max_replica_count {self.max_replica_count} < min_replica_count {self.min_replica_count}"
            )
        if self.accelerator_type and self.accelerator_count < 1:
            raise ValueError("accelerator_count must be >= 1 when accelerator_type is set")
        locations = [r.location for r in self.regions]
        if len(set(locations)) != len(locations):
            raise ValueError(f"regions list a location twice: {locations}")
        return self


class ServeConfig(_Strict):
    gguf: GGUFExportConfig = Field(default_factory=GGUFExportConfig)
    ollama: OllamaConfig = Field(default_factory=OllamaConfig)
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
