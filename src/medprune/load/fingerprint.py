"""What a run really reads, pinned at the start of the run: the exact model version behind
``model.source`` and a digest of every data file.

On Vertex AI a task's cache key is its component and its inputs. The config names an alias
(``vertex://.../models/ID@production``) and data paths, which stay the same when the alias
moves to a new version or a data file is replaced, so a cached load (or evaluation) would be
reused for other inputs. The pipeline's first task therefore calls :func:`resolve_inputs`
(never cached) and passes the pinned model source and the digests to the tasks that read
them; their cache keys change exactly when what they read changes, and the load task loads
the version that was resolved, even if the alias moves during the run.

    inputs = resolve_inputs(cfg)
    inputs.model_source       # vertex://projects/p/locations/l/models/123@4 (version pinned)
    inputs.model_fingerprint  # sha256 over the model's files (or its version and artifact)
    inputs.data_sha256        # {"evaluate.mcq": "sha256:...", ...}
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import DataError, ModelLoadError
from medprune.io.uris import parse_gcs_uri, parse_vertex_model_uri
from medprune.vertex.models import source_version

#: Files above this size are identified by size and modification time, not read in full
#: (a 140 GB model on Cloud Storage FUSE would otherwise be read once per run).
FULL_HASH_LIMIT = 64 << 20


@dataclass(frozen=True)
class ResolvedInputs:
    model_source: str
    model_fingerprint: str
    data_sha256: dict[str, str]

    def to_dict(self) -> dict:
        return asdict(self)

    def data_json(self) -> str:
        return json.dumps(self.data_sha256, sort_keys=True)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def local_fingerprint(path: str | Path, *, full_hash_limit: int = FULL_HASH_LIMIT) -> str:
    """``sha256:HEX`` of a file, or of a directory's file names, sizes and contents (files
    above ``full_hash_limit`` bytes by size and mtime)."""
    path = Path(path)
    if path.is_file():
        return "sha256:" + _file_sha256(path)
    if not path.is_dir():
        raise DataError(f"{path}: not found")
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        st = p.stat()
        content = _file_sha256(p) if st.st_size <= full_hash_limit else f"mtime:{st.st_mtime_ns}"
        h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{content}\n".encode())
    return "sha256:" + h.hexdigest()


def gcs_fingerprint(uri: str) -> str:
    """``sha256:HEX`` over the names, sizes, CRC32C and generations of the objects at (or
    under) a ``gs://`` URI, as Cloud Storage reports them (nothing is downloaded)."""
    from medprune.io.gcs import list_objects, storage_client

    bucket, name = parse_gcs_uri(uri)
    client = storage_client()
    blob = client.bucket(bucket).get_blob(name) if name else None
    blobs = [blob] if blob is not None else list_objects(uri, client=client)
    if not blobs:
        raise DataError(f"{uri}: no objects found")
    h = hashlib.sha256()
    for b in sorted(blobs, key=lambda b: b.name):
        h.update(f"{b.name}\0{b.size}\0{b.crc32c}\0{b.generation}\n".encode())
    return "sha256:" + h.hexdigest()


def fingerprint(path: str) -> str:
    return gcs_fingerprint(path) if path.startswith("gs://") else local_fingerprint(path)


def pin_vertex_source(source: str, api_endpoint: str | None = None) -> tuple[str, str]:
    """``(vertex://.../models/ID@VERSION_ID, fingerprint)`` for a ``vertex://`` source that may
    name an alias: the version the alias points to now, and its id and artifact URI."""
    ref = parse_vertex_model_uri(source)
    model = source_version(source, api_endpoint, field="model.source")
    pinned = f"vertex://{ref.resource_name}@{model.version_id}"
    digest = hashlib.sha256(
        f"{ref.resource_name}@{model.version_id}\0{model.uri}".encode()
    ).hexdigest()
    return pinned, "sha256:" + digest


def data_paths(cfg: RunConfig) -> dict[str, str]:
    """Every data file or folder the run reads, by dotted config field."""
    fields = {
        "prune.calibration.data": cfg.prune.calibration.data,
        "recover.data": cfg.recover.data if cfg.recover.enabled else None,
        "recover.eval_data": cfg.recover.eval_data if cfg.recover.enabled else None,
        "evaluate.mcq": cfg.evaluate.mcq,
        "evaluate.perplexity": cfg.evaluate.perplexity,
        "evaluate.summarization": cfg.evaluate.summarization,
    }
    # sections other modules add (extra MCQ sources, visit notes) when present
    for i, source in enumerate(getattr(cfg.evaluate, "mcq_sources", None) or []):
        fields[f"evaluate.mcq_sources[{i}].data"] = getattr(source, "data", None)
    notes = getattr(cfg.evaluate, "visit_notes", None)
    if notes is not None:
        fields["evaluate.visit_notes.data"] = getattr(notes, "data", None)
    return {k: v for k, v in fields.items() if v}


def resolve_inputs(cfg: RunConfig) -> ResolvedInputs:
    """Pin ``model.source`` to a version and fingerprint it and every data file; errors name
    the field."""
    source = cfg.model.source
    if source.startswith("vertex://"):
        endpoint = (cfg.vertex.api_endpoint if cfg.vertex else None) or os.environ.get(
            "MEDPRUNE_VERTEX_API_ENDPOINT"
        )
        pinned, model_fp = pin_vertex_source(source, endpoint)
    else:
        pinned = source
        try:
            model_fp = fingerprint(source)
        except DataError as exc:
            raise ModelLoadError(f"model.source: {exc}") from None
    data = {}
    for field, path in data_paths(cfg).items():
        try:
            data[field] = fingerprint(path)
        except DataError as exc:
            raise DataError(f"{field}: {exc}") from None
    return ResolvedInputs(model_source=pinned, model_fingerprint=model_fp, data_sha256=data)
