"""The search's files on Cloud Storage: ``gs://`` data files and a ``gs://`` workspace, read
the way Vertex AI gives them to a task.

Every Vertex AI task sees Cloud Storage through the Cloud Storage FUSE mount at
``/gcs/BUCKET`` (:func:`medprune.io.fuse.gcs_fuse_path`; ``$MEDPRUNE_GCS_FUSE_ROOT``
names another mount). So the workspace ``search.cache_dir: gs://B/P`` is the folder
``/gcs/B/P``, written the way FUSE allows: files by rename, never a directory rename, no locks.
The cache stays correct on it because every entry is written in place and finished by its
completion file (written last, by a file rename), and only one task ever writes an entry: the
shared entries (dense model, its evaluations and calibration statistics) in the setup task, a
candidate's entries in its own branch.

A data file ``gs://B/P`` (the search items, the certification file, calibration, recovery and
evaluation data) is read through the mount where it is there, else downloaded with
google-cloud-storage (:func:`medprune.io.fuse.localize`) into a folder named after its
URI, so every task on one machine sees the same path (cache keys include the paths).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import ConfigError, DataError
from medprune.io.fuse import gcs_fuse_root, localize


def search_data_paths(cfg: RunConfig) -> dict[str, str]:
    """Every data file the search reads, by dotted config field."""
    from medprune.load.fingerprint import data_paths

    fields = dict(data_paths(cfg))
    if cfg.search is not None and cfg.search.certification.file:
        fields["search.certification.file"] = cfg.search.certification.file
    return fields


def local_data_path(uri: str) -> str:
    """A path this task can read for ``uri``: local paths as they are; ``gs://`` through the
    FUSE mount, else downloaded (the same folder for the same URI)."""
    if not uri.startswith("gs://"):
        return uri
    folder = (
        Path(tempfile.gettempdir())
        / "medprune-search-data"
        / hashlib.sha256(uri.encode()).hexdigest()[:16]
    )
    folder.mkdir(parents=True, exist_ok=True)
    return str(localize(uri, folder))


def _set(data: dict, field: str, value: str) -> None:
    """Set ``data[a][b][i][c]`` for the dotted field ``a.b[i].c``."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([A-Za-z_]\w*)(?:\[(\d+)\])?", field):
        parts.append(name)
        if index:
            parts.append(int(index))
    node = data
    for key in parts[:-1]:
        node = node[key]
    node[parts[-1]] = value


def localize_data(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every ``gs://`` data file replaced by a path this task can read (see the
    module doc); ``cfg`` itself when none is remote. A missing object is a :class:`DataError`
    naming the field."""
    remote = {f: v for f, v in search_data_paths(cfg).items() if v.startswith("gs://")}
    if not remote:
        return cfg
    data = json.loads(cfg.to_json())
    for field, uri in remote.items():
        try:
            _set(data, field, local_data_path(uri))
        except DataError as exc:
            raise DataError(f"{field}: {exc}") from None
    return RunConfig.model_validate(data)


def check_workspace_reachable(cfg: RunConfig) -> None:
    """A ``gs://`` workspace needs the Cloud Storage FUSE mount (there on Vertex AI): say so
    before any work when it is not there."""
    sc = cfg.search
    path = (sc.cache_dir if sc is not None else None) or ""
    root = gcs_fuse_root()
    if path.startswith("gs://") and not Path(root).is_dir():
        raise ConfigError(
            f"search.cache_dir={path!r} is read through the Cloud Storage FUSE mount at {root} "
            "(Vertex AI mounts every bucket there), which this machine does not have: use a local "
            "folder here, or mount the bucket with gcsfuse and set MEDPRUNE_GCS_FUSE_ROOT to the "
            "folder holding it"
        )
