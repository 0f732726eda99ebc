"""Turn a model source (local directory, ``gs://`` prefix, or ``vertex://`` model version)
into a local directory the loader can read.

    path = resolve_model_source("vertex://projects/p/locations/us-central1/models/123@production",
                                workdir=Path("runs/r1"))

Remote sources are downloaded once into ``WORKDIR/sources/`` (checksums verified, atomic),
and a second call with the same source reuses the finished download.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from medprune.errors import ModelLoadError, StorageError, UriError
from medprune.io.gcs import download_dir
from medprune.io.uris import parse_gcs_uri, parse_vertex_model_uri
from medprune.load.model import check_model_dir
from medprune.vertex.models import source_version

log = logging.getLogger(__name__)


def _cache_dir(workdir: Path, source: str) -> Path:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return Path(workdir) / "sources" / digest


def _download(gs_uri: str, dest: Path, what: str) -> Path:
    if dest.is_dir() and any(dest.iterdir()):
        log.info("reusing %s downloaded earlier to %s", what, dest)
        return dest
    try:
        return download_dir(gs_uri, dest)
    except StorageError as exc:
        raise ModelLoadError(f"model source {what}: {exc}") from exc


def vertex_artifact_uri(source: str, api_endpoint: str | None = None) -> str:
    """The ``gs://`` artifact URI of a Vertex AI model version given as ``vertex://...``."""
    ref = parse_vertex_model_uri(source)
    model = source_version(source, api_endpoint, field="model source")
    uri = model.uri
    if not uri or not uri.startswith("gs://"):
        raise ModelLoadError(
            f"model source {source}: version {ref.versioned_name} has no gs:// artifact URI "
            f"(got {uri!r}); only models with artifacts in Cloud Storage can be loaded"
        )
    return uri


def resolve_model_source(
    source: str, workdir: str | Path, *, api_endpoint: str | None = None
) -> Path:
    """A local directory holding the model named by ``source``.

    Local paths are returned as they are (they must be existing directories); ``gs://``
    prefixes are downloaded; ``vertex://`` URIs are looked up in the Model Registry and
    their artifact directory downloaded. The directory must hold config.json and
    safetensors weights. Raises ModelLoadError or UriError naming the source.
    """
    workdir = Path(workdir)
    if source.startswith("gs://"):
        parse_gcs_uri(source)
        return check_model_dir(_download(source, _cache_dir(workdir, source), source))
    if source.startswith("vertex://"):
        gs_uri = vertex_artifact_uri(source, api_endpoint)
        log.info("%s resolves to %s", source, gs_uri)
        return check_model_dir(
            _download(gs_uri, _cache_dir(workdir, source), f"{source} ({gs_uri})")
        )
    if "://" in source:
        raise UriError(
            f"model.source {source!r}: unsupported scheme; use a local path, gs:// or vertex://"
        )
    path = Path(os.path.expanduser(source))
    if not path.exists():
        raise ModelLoadError(f"model.source {source}: model directory not found")
    if not path.is_dir():
        raise ModelLoadError(
            f"model.source {source}: not a directory (expected a saved model directory)"
        )
    return check_model_dir(path)
