"""The `registry` section: where a passing candidate is registered."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medprune.config._base import _Strict
from medprune.config.vertex import check_registration_alias


class LocalRegistryConfig(_Strict):
    root: str = Field(default="registry", description="Directory of the local model registry.")


class RegistryConfig(_Strict):
    target: Literal["local", "vertex"] = Field(default="local")
    local: LocalRegistryConfig = Field(default_factory=LocalRegistryConfig)
    aliases: list[str] = Field(
        default_factory=lambda: ["candidate"],
        description="Registration aliases moved to each new version. With target 'vertex' they "
        "follow Vertex AI's alias rule ([a-z][a-zA-Z0-9-]{0,126}[a-z0-9]: no '_') and may not "
        "be 'production' / 'previous-production', which only deploy / promote / rollback move.",
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

    @model_validator(mode="after")
    def _vertex_aliases(self) -> RegistryConfig:
        if self.target == "vertex":
            for a in self.aliases:
                try:
                    check_registration_alias(a)
                except ValueError as exc:
                    raise ValueError(f"registry.aliases: {exc}") from None
        return self
