"""The `model` section: where the dense model comes from and how it is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medprune.config._base import _Strict


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

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v
