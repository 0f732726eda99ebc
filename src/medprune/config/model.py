"""The `model` section: where the dense model comes from and how it is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medprune.config._base import _Strict

#: Release terms a model folder can carry (their files: :data:`medprune.load.terms.TERMS_FILES`).
KNOWN_TERMS: tuple[str, ...] = ("gemma",)


class ModelConfig(_Strict):
    source: str = Field(
        description="Where the dense model is: a local directory, gs://BUCKET/PATH, or "
        "vertex://projects/P/locations/L/models/ID@VERSION_OR_ALIAS."
    )
    name: str = Field(
        default="medprune-model",
        pattern=r"^[a-z0-9][a-z0-9\-_.]{0,62}$",
        description="Name of the model in the registry (lower case, digits, - _ .).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="Weights dtype for pruning and evaluation."
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Allow custom modelling code shipped with the model. Off by default.",
    )

    accept_terms: list[str] = Field(
        default_factory=list,
        description="Terms the model is released under that this run accepts, e.g. [gemma] for "
        "Gemma models (fetch-default writes GEMMA_TERMS.html beside them); a model folder that "
        "carries terms not listed here is refused before any work.",
    )

    @field_validator("accept_terms")
    @classmethod
    def _known_terms(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in KNOWN_TERMS]
        if unknown:
            raise ValueError(f"unknown terms {unknown}; known: {list(KNOWN_TERMS)}")
        return v

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v
