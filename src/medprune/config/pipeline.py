"""The `pipeline` section: the component image and per-stage resources on Vertex AI."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from medprune.config._base import _Strict


class ResourceConfig(_Strict):
    cpu: str = Field(default="4", description="CPU limit for the task on Vertex, e.g. '8'.")
    memory: str = Field(
        default="16G", description="Memory limit for the task on Vertex, e.g. '32G'."
    )
    accelerator_type: str | None = Field(default=None, description="e.g. NVIDIA_L4; None for CPU.")
    accelerator_count: int = Field(default=1, ge=1)

    @field_validator("memory")
    @classmethod
    def _memory_form(cls, v: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?[KMGT]i?", v):
            raise ValueError(f"must look like '16G' or '512Mi', got {v!r}")
        return v


def _default_resources() -> dict[str, ResourceConfig]:
    return {
        "load": ResourceConfig(cpu="4", memory="32G"),
        "prune": ResourceConfig(cpu="8", memory="64G", accelerator_type="NVIDIA_L4"),
        "recover": ResourceConfig(cpu="8", memory="64G", accelerator_type="NVIDIA_L4"),
        "evaluate": ResourceConfig(cpu="8", memory="32G", accelerator_type="NVIDIA_L4"),
        "gate": ResourceConfig(cpu="1", memory="4G"),
        "register": ResourceConfig(cpu="2", memory="16G"),
    }


STAGES = ("load", "prune", "recover", "evaluate", "gate", "register")


class PipelineConfig(_Strict):
    base_image: str | None = Field(
        default=None,
        description="Container image holding medprune and kfp; every component runs in it. "
        "Unset: IMAGE_REPOSITORY/medprune-{gpu,cpu}:IMAGE_TAG, the image containers/ builds.",
    )
    image_repository: str | None = Field(
        default=None,
        description="Artifact Registry Docker repository of the medprune images, "
        "REGION-docker.pkg.dev/PROJECT/REPO (terraform output image_repository); "
        "defaults to $MEDPRUNE_IMAGE_REPOSITORY.",
    )
    image_tag: str | None = Field(
        default=None,
        description="Tag of the medprune image (cloudbuild _TAG); defaults to the medprune version.",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$",
    )
    resources: dict[str, ResourceConfig] = Field(default_factory=_default_resources)

    @field_validator("resources")
    @classmethod
    def _known_stages(cls, v: dict[str, ResourceConfig]) -> dict[str, ResourceConfig]:
        unknown = set(v) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
        merged = _default_resources()
        merged.update(v)
        return merged
