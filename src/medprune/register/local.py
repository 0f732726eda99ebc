"""A local model registry on the file system: versions, aliases and metadata.

Layout::

    ROOT/<model>/<version>/            model files (safetensors, config, tokenizer)
    ROOT/<model>/<version>/metadata.json
    ROOT/<model>/aliases.json          {"candidate": 3, "production": 2}

Versions are integers that only grow. A version directory is written under a temporary
name and renamed into place, so a failure leaves no half version; ``aliases.json`` is
replaced atomically. A lock file serialises concurrent registrations of one model.

This registry keeps the directory rename (and ``flock``) on purpose: it lives on a local or
network disk that supports both, never on Cloud Storage FUSE (which supports neither a
directory rename nor locks); on Vertex AI the registry is the Vertex AI Model Registry
(``registry.target: vertex``), whose versions are created in one API call.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from medprune.errors import RegistryError
from medprune.io.atomic import atomic_directory, atomic_write_json

_NAME = re.compile(r"^[a-z0-9][a-z0-9\-_.]{0,62}$")
METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"


def non_finite_values(obj, path: str = "") -> list[str]:
    """Dotted paths of every NaN or infinite number in a (nested) metrics record."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [f"{path or 'value'} = {obj}"]
    if isinstance(obj, dict):
        return [
            p
            for k, v in obj.items()
            for p in non_finite_values(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_values(v, f"{path}.{i}")]
    return []


def refuse_non_finite_metrics(metrics) -> None:
    """A model whose evaluation has NaN or infinite metrics is broken (or was evaluated on a
    broken input): it never enters a registry."""
    bad = non_finite_values(metrics)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise RegistryError(
            f"refusing to register: {len(bad)} metric(s) are not finite: {', '.join(bad[:3])}{more}"
        )


@dataclass(frozen=True)
class RegisteredVersion:
    model: str
    version: int
    path: str
    aliases: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


class LocalRegistry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------
    def versions(self, model: str) -> list[int]:
        d = self.root / model
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())

    def aliases(self, model: str) -> dict[str, int]:
        path = self.root / model / ALIASES_FILE
        if not path.is_file():
            return {}
        try:
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path}: corrupt alias file ({exc})") from None

    def resolve(self, model: str, version_or_alias: str | int) -> Path:
        """Directory of a version given its number or an alias."""
        if isinstance(version_or_alias, int) or str(version_or_alias).isdigit():
            version = int(version_or_alias)
        else:
            aliases = self.aliases(model)
            if version_or_alias not in aliases:
                raise RegistryError(
                    f"model {model!r} has no alias {version_or_alias!r}; aliases: {sorted(aliases)}"
                )
            version = aliases[version_or_alias]
        path = self.root / model / str(version)
        if not path.is_dir():
            raise RegistryError(f"model {model!r} has no version {version}")
        return path

    def metadata(self, model: str, version_or_alias: str | int) -> dict:
        return json.loads((self.resolve(model, version_or_alias) / METADATA_FILE).read_text())

    # -- writing -------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail early, before any work, if the registry root cannot be written."""
        root = self.root
        probe = root
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise RegistryError(f"registry root {root}: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise RegistryError(f"registry root {root}: {probe} is not writable")

    @contextmanager
    def _locked(self, model: str) -> Iterator[Path]:
        model_dir = self.root / model
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            # opened outside the with below so that only this names an unwritable root
            lock = open(model_dir / ".lock", "w")  # noqa: SIM115  closed by the with below
        except OSError as exc:
            raise RegistryError(f"registry root {self.root} is not writable: {exc}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield model_dir

    def register(
        self,
        model: str,
        model_dir: str | Path,
        metadata: dict,
        aliases: list[str] = (),  # type: ignore[assignment]
    ) -> RegisteredVersion:
        """Copy ``model_dir`` in as the next version with ``metadata``; move ``aliases`` to it."""
        if not _NAME.match(model):
            raise RegistryError(f"model name {model!r} must be lower case letters, digits, - _ .")
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise RegistryError(f"{model_dir}: model directory to register not found")
        refuse_non_finite_metrics(metadata.get("metrics", {}))
        self.check_writable()
        with self._locked(model) as root:
            version = (self.versions(model) or [0])[-1] + 1
            final = root / str(version)
            record = dict(metadata)
            record.update(
                model=model,
                version=version,
                registered_at=datetime.now(timezone.utc).isoformat(),
                aliases=list(aliases),
            )
            try:
                with atomic_directory(final) as tmp:
                    for src in sorted(model_dir.iterdir()):
                        if src.is_file():
                            shutil.copy2(src, tmp / src.name)
                    (tmp / METADATA_FILE).write_text(
                        json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
                    )
            except OSError as exc:
                raise RegistryError(
                    f"cannot write version {version} of {model!r} under {root}: {exc}"
                ) from exc
            if aliases:
                self._move_aliases(model, list(aliases), version)
        return RegisteredVersion(
            model=model, version=version, path=str(final), aliases=list(aliases)
        )

    def _move_aliases(self, model: str, aliases: list[str], version: int) -> None:
        current = self.aliases(model)
        current.update({a: version for a in aliases})
        atomic_write_json(self.root / model / ALIASES_FILE, current)

    def set_alias(self, model: str, alias: str, version: int) -> None:
        """Point ``alias`` at an existing ``version`` (for example promote to production)."""
        with self._locked(model):
            if version not in self.versions(model):
                raise RegistryError(f"model {model!r} has no version {version}")
            self._move_aliases(model, [alias], version)
