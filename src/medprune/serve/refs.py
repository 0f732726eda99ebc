"""Name a registered model version: ``NAME@ALIAS``, ``NAME@VERSION``, ``registry://NAME@ALIAS``,
a ``vertex://`` model version, or a model directory.

    ref = parse_model_ref("clinical-llama@production")
    path = resolve_model_ref("clinical-llama@production", registry_root="registry", workdir=".")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medprune.errors import MedpruneError, RegistryError

_REF = re.compile(
    r"^(?:registry://)?(?P<name>[a-z0-9][a-z0-9\-_.]{0,62})@(?P<tag>[A-Za-z0-9\-_]+)$"
)


@dataclass(frozen=True)
class ModelRef:
    name: str
    version_or_alias: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version_or_alias}"


def parse_model_ref(text: str) -> ModelRef:
    """``NAME@ALIAS`` / ``NAME@N`` (optionally prefixed ``registry://``) as a :class:`ModelRef`."""
    m = _REF.match(text.strip())
    if not m:
        raise MedpruneError(
            f"model reference {text!r}: expected NAME@ALIAS or NAME@VERSION (e.g. "
            "clinical-llama@production), registry://NAME@ALIAS, vertex://..., or a model directory"
        )
    return ModelRef(m["name"], m["tag"])


def resolve_model_ref(
    text: str, *, registry_root: str | Path = "registry", workdir: str | Path = "."
) -> Path:
    """The local directory of the model ``text`` names (see the module docstring).

    A local-registry reference is resolved in ``registry_root``; ``vertex://`` and ``gs://``
    sources are downloaded into ``workdir/sources`` (see :func:`medprune.load.resolve.resolve_model_source`).
    """
    from medprune.load.resolve import resolve_model_source
    from medprune.register.local import LocalRegistry

    if text.startswith(("vertex://", "gs://")):
        return resolve_model_source(text, workdir)
    path = Path(text)
    if "@" not in text and path.is_dir():
        return resolve_model_source(str(path), workdir)
    ref = parse_model_ref(text)
    registry = LocalRegistry(registry_root)
    if not registry.versions(ref.name):
        raise RegistryError(
            f"model {ref.name!r} is not in the registry at {registry_root}; list it with "
            f"`medprune registry list {ref.name} --root {registry_root}` or pass --root"
        )
    return registry.resolve(ref.name, ref.version_or_alias)
