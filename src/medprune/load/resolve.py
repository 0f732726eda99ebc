"""Turn a model source (local dir, gs://, vertex://) into a local directory."""

from __future__ import annotations

from pathlib import Path

from medprune.errors import ModelLoadError, UriError
from medprune.load.model import check_model_dir


def resolve_model_source(source: str, workdir: str | Path) -> Path:
    """Return a local model directory for ``source``; remote sources are downloaded into
    ``workdir``."""
    if source.startswith(("gs://", "vertex://")):
        raise UriError(f"model.source {source!r}: remote sources are not available in this build")
    if "://" in source:
        raise UriError(f"model.source {source!r}: unsupported scheme; use a local path, gs:// or vertex://")
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"model.source {source}: model directory not found")
    return check_model_dir(path)
