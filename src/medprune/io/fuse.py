"""Cloud Storage through its FUSE mount: every Vertex AI task sees ``gs://BUCKET/PATH`` as the
folder ``/gcs/BUCKET/PATH`` (``$MEDPRUNE_GCS_FUSE_ROOT`` names another gcsfuse mount), written
the way FUSE allows: files by rename, never a directory rename, no locks.

    gcs_fuse_path("gs://b/data/r.jsonl")   # "/gcs/b/data/r.jsonl"
    gcs_uri("/gcs/b/out")                   # "gs://b/out"
    localize("gs://b/data/r.jsonl")         # through the mount, else downloaded
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from medprune.errors import DataError

GCS_FUSE_ROOT = "/gcs"
#: Where Cloud Storage is mounted when not at Vertex AI's ``/gcs`` (a gcsfuse mount elsewhere).
GCS_FUSE_ROOT_ENV = "MEDPRUNE_GCS_FUSE_ROOT"
#: Paths under Vertex AI's mount exist only inside its containers.
VERTEX_FUSE_PREFIX = GCS_FUSE_ROOT + "/"


def gcs_fuse_root() -> str:
    """The Cloud Storage FUSE mount: ``$MEDPRUNE_GCS_FUSE_ROOT``, else ``/gcs`` (Vertex AI)."""
    return os.environ.get(GCS_FUSE_ROOT_ENV) or GCS_FUSE_ROOT


def gcs_fuse_path(uri: str, root: str | None = None) -> str:
    """``gs://BUCKET/PATH`` -> ``/gcs/BUCKET/PATH`` (the Cloud Storage FUSE mount on Vertex,
    or ``root``, or :func:`gcs_fuse_root`); other paths are returned unchanged."""
    if not uri.startswith("gs://"):
        return uri
    rest = uri[len("gs://") :]
    if not rest or rest.startswith("/"):
        raise DataError(f"{uri}: malformed gs:// URI; expected gs://BUCKET/PATH")
    return f"{(root or gcs_fuse_root()).rstrip('/')}/{rest}"


def on_vertex_mount(path: str) -> bool:
    """Whether ``path`` is on Vertex AI's Cloud Storage FUSE mount (``/gcs/BUCKET/PATH``)."""
    return path.startswith(VERTEX_FUSE_PREFIX)


def gcs_uri(path: str) -> str:
    """/gcs/B/P -> gs://B/P (Vertex artifact paths are FUSE paths); others unchanged."""
    if on_vertex_mount(path):
        return "gs://" + path[len(VERTEX_FUSE_PREFIX) :]
    return path


def localize(uri: str, workdir: str | Path | None = None) -> Path:
    """A local path for a data file: local paths as they are; ``gs://`` through the FUSE mount
    when it exists, else downloaded with google-cloud-storage into ``workdir``."""
    if "://" in uri and not uri.startswith("gs://"):
        raise DataError(f"{uri}: unsupported scheme; use a local path or gs://BUCKET/PATH")
    if not uri.startswith("gs://"):
        return Path(uri)
    fused = Path(gcs_fuse_path(uri))
    if fused.is_file():
        return fused
    from google.cloud import storage  # the client library: only when a file is downloaded

    bucket, _, blob_name = uri[len("gs://") :].partition("/")
    if not blob_name:
        raise DataError(f"{uri}: malformed gs:// URI; expected gs://BUCKET/PATH")
    dest_dir = Path(workdir or tempfile.mkdtemp(prefix="medprune-data-"))
    dest = dest_dir / Path(blob_name).name
    blob = storage.Client().bucket(bucket).blob(blob_name)
    if not blob.exists():
        raise DataError(f"{uri}: data file not found")
    blob.download_to_filename(str(dest))
    return dest
