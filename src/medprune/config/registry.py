"""The `registry` section: where a passing candidate is registered."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from medprune.config._base import _Strict


class LocalRegistryConfig(_Strict):
    root: str = Field(default="registry", description="Directory of the local model registry.")


class RegistryConfig(_Strict):
    target: Literal["local", "vertex"] = Field(default="local")
    local: LocalRegistryConfig = Field(default_factory=LocalRegistryConfig)
    aliases: list[str] = Field(
        default_factory=lambda: ["candidate"], description="Aliases moved to the new version."
    )

    export: list[Literal["gguf"]] = Field(
        default_factory=list,
        description="Extra serving formats added to each registered version: 'gguf' writes GGUF "
        "files and an Ollama Modelfile (serve.gguf, serve.ollama) into the version.",
    )

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.fullmatch(r"[a-z][a-z0-9\-_]{0,62}", a):
                raise ValueError(f"alias {a!r} must be lower case letters, digits, - or _")
        return v
