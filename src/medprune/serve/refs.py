"""Name a registered model version: ``NAME@ALIAS``, ``NAME@VERSION``, ``registry://NAME@ALIAS``,
a ``vertex://`` model version, or a model directory.

    ref = parse_model_ref("clinical-llama@production")
    path = resolve_model_ref("clinical-llama@production", registry_root="registry", workdir=".")
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from medprune.errors import MedpruneError, ModelLoadError, RegistryError

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
    sources are downloaded into ``workdir/sources`` (see :func:`medprune.load.resolve.resolve_model_source`;
    ``vertex://`` ones by version, :func:`resolve_vertex_ref`).
    """
    from medprune.load.resolve import resolve_model_source
    from medprune.register.local import LocalRegistry

    if text.startswith("vertex://"):
        return resolve_vertex_ref(text, workdir)
    if text.startswith("gs://"):
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


#: Beside each downloaded ``vertex://`` version: which version (and artifact) it holds.
SOURCE_RECORD_SUFFIX = ".source.json"


def resolve_vertex_ref(uri: str, workdir: str | Path, api_endpoint: str | None = None) -> Path:
    """The local directory of the Vertex AI model version ``uri`` names *now*.

    An alias (``vertex://.../models/ID@production``) is resolved to its version id on every
    call, and the download is cached by that version (``...@7``), so a moved alias loads the
    new version instead of reusing the old download. A record beside the download
    (``<dir>.source.json``: the pinned URI and the fingerprint of version id and artifact
    URI) is checked on every load; a download that holds another version is refused."""
    from medprune.io.atomic import atomic_write_json
    from medprune.load.fingerprint import pin_vertex_source
    from medprune.load.resolve import resolve_model_source

    pinned, fingerprint = pin_vertex_source(uri, api_endpoint)
    path = resolve_model_source(pinned, workdir, api_endpoint=api_endpoint)
    record_path = path.parent / f"{path.name}{SOURCE_RECORD_SUFFIX}"
    expected = {"source": pinned, "fingerprint": fingerprint}
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except ValueError:
            record = None
        if record != expected:
            raise ModelLoadError(
                f"{uri} resolves to {pinned}, but the download at {path} is recorded as "
                f"{record!r} ({record_path}); delete {path} and its record to download it again"
            )
    else:
        atomic_write_json(record_path, expected)
    return path
