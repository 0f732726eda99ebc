"""Copy model directories to and from Cloud Storage, in parallel, with verified checksums.

Uses ``google-cloud-storage``'s transfer manager (threads). Every object is checked
after the transfer: the CRC32C (and the MD5 when the object has one) that Cloud Storage
reports must match the local bytes. Downloads land in a temporary directory that is
renamed into place only when every file verified, so a reader never sees half a model.

Setting ``STORAGE_EMULATOR_HOST`` points the client at an emulator (the tests do this).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path

import google_crc32c
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage import transfer_manager

from medprune.errors import StorageError
from medprune.io.atomic import atomic_directory
from medprune.io.uris import join_gcs, parse_gcs_uri

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def storage_client(project: str | None = None) -> storage.Client:
    """A storage client; with ``STORAGE_EMULATOR_HOST`` set it talks to the emulator anonymously."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project or "medprune-emulator")
    return storage.Client(project=project)


def file_checksums(path: str | Path) -> tuple[str, str]:
    """``(crc32c, md5)`` of a file, base64-encoded as Cloud Storage reports them."""
    crc = google_crc32c.Checksum()
    md5 = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc.update(chunk)
            md5.update(chunk)
    return (
        base64.b64encode(crc.digest()).decode("ascii"),
        base64.b64encode(md5.digest()).decode("ascii"),
    )


def _verify(path: Path, blob: storage.Blob, uri: str) -> None:
    crc, md5 = file_checksums(path)
    if not blob.crc32c:
        raise StorageError(f"{uri}: Cloud Storage reported no CRC32C; cannot verify the copy")
    if blob.crc32c != crc:
        raise StorageError(
            f"{uri}: checksum mismatch for {path.name} (crc32c local {crc}, remote {blob.crc32c})"
        )
    if blob.md5_hash and blob.md5_hash != md5:
        raise StorageError(
            f"{uri}: checksum mismatch for {path.name} (md5 local {md5}, remote {blob.md5_hash})"
        )


def _raise_first_failure(results: list, what: list[str], action: str) -> None:
    for result, name in zip(results, what, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, gexc.NotFound):
                raise StorageError(
                    f"{action} {name}: object or bucket not found ({result.message})"
                )
            raise StorageError(f"{action} {name} failed: {result}") from result


def upload_dir(
    local_dir: str | Path,
    gs_uri: str,
    *,
    max_workers: int = 8,
    client: storage.Client | None = None,
) -> list[str]:
    """Upload every file under ``local_dir`` to ``gs_uri`` (keeping relative paths).

    Objects that already exist are never overwritten (the upload fails instead), every
    object's checksum is verified, and on any failure the objects this call created are
    deleted before StorageError is raised. Returns the ``gs://`` URIs, sorted.
    """
    local_dir = Path(local_dir)
    bucket_name, prefix = parse_gcs_uri(gs_uri)
    if not local_dir.is_dir():
        raise StorageError(f"{local_dir}: model directory not found")
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    if not files:
        raise StorageError(f"{local_dir}: directory is empty; nothing to upload")
    rel = [p.relative_to(local_dir).as_posix() for p in files]
    client = client or storage_client()
    bucket = client.bucket(bucket_name)
    blob_prefix = f"{prefix}/" if prefix else ""
    uris = [join_gcs(bucket_name, blob_prefix + r) for r in rel]
    if list_objects(join_gcs(bucket_name, prefix), client=client):
        raise StorageError(
            f"{join_gcs(bucket_name, prefix)} already has objects; refusing to overwrite "
            "(every model version gets a new prefix)"
        )
    results = transfer_manager.upload_many_from_filenames(
        bucket,
        rel,
        source_directory=str(local_dir),
        blob_name_prefix=blob_prefix,
        # if_generation_match=0: create only; a model version is never overwritten.
        upload_kwargs={"checksum": "crc32c", "if_generation_match": 0},
        worker_type=transfer_manager.THREAD,
        max_workers=max_workers,
        raise_exception=False,
    )
    # Only objects this call created are cleaned up on failure, never pre-existing ones.
    created = [
        blob_prefix + r
        for r, res in zip(rel, results, strict=True)
        if not isinstance(res, BaseException)
    ]
    try:
        for result, uri in zip(results, uris, strict=True):
            if isinstance(result, gexc.PreconditionFailed):
                raise StorageError(f"{uri} already exists; refusing to overwrite it")
        _raise_first_failure(results, uris, "upload to")
        for path, r, uri in zip(files, rel, uris, strict=True):
            blob = bucket.get_blob(blob_prefix + r)
            if blob is None:
                raise StorageError(f"{uri}: missing right after upload")
            _verify(path, blob, uri)
    except BaseException:
        _delete_quietly(bucket, created)
        raise
    log.info("uploaded %d files to %s", len(uris), join_gcs(bucket_name, prefix))
    return uris


def _delete_quietly(bucket: storage.Bucket, names: list[str]) -> None:
    # Best-effort cleanup after a failed upload; the original error is what the user needs.
    for name in names:
        try:
            bucket.blob(name).delete()
        except Exception as exc:
            log.warning("could not delete gs://%s/%s during cleanup: %s", bucket.name, name, exc)


def list_objects(gs_uri: str, *, client: storage.Client | None = None) -> list[storage.Blob]:
    """Objects under ``gs_uri`` treated as a directory (``PREFIX/...``), sorted by name."""
    bucket_name, prefix = parse_gcs_uri(gs_uri)
    client = client or storage_client()
    try:
        blobs = list(client.list_blobs(bucket_name, prefix=f"{prefix}/" if prefix else None))
    except gexc.NotFound:
        raise StorageError(f"{gs_uri}: bucket {bucket_name!r} not found") from None
    return sorted((b for b in blobs if not b.name.endswith("/")), key=lambda b: b.name)


def download_dir(
    gs_uri: str,
    local_dir: str | Path,
    *,
    max_workers: int = 8,
    client: storage.Client | None = None,
) -> Path:
    """Download every object under ``gs_uri`` into ``local_dir`` (which must not exist yet).

    Files go to a temporary sibling directory and are checksum-verified; only then is
    it renamed to ``local_dir``. Raises StorageError naming the missing or bad object.
    """
    local_dir = Path(local_dir)
    if local_dir.exists() and any(local_dir.iterdir()):
        raise StorageError(f"{local_dir}: already exists and is not empty")
    if local_dir.exists():
        local_dir.rmdir()
    bucket_name, prefix = parse_gcs_uri(gs_uri)
    client = client or storage_client()
    blobs = list_objects(gs_uri, client=client)
    if not blobs:
        raise StorageError(f"{gs_uri}: no objects found under this prefix")
    blob_prefix = f"{prefix}/" if prefix else ""
    rel = [b.name[len(blob_prefix) :] for b in blobs]
    for r in rel:
        if r.startswith("/") or ".." in Path(r).parts:
            raise StorageError(f"{join_gcs(bucket_name, blob_prefix + r)}: unsafe object name")
    bucket = client.bucket(bucket_name)
    with atomic_directory(local_dir) as tmp:
        results = transfer_manager.download_many_to_path(
            bucket,
            rel,
            destination_directory=str(tmp),
            blob_name_prefix=blob_prefix,
            download_kwargs={"checksum": "crc32c"},
            worker_type=transfer_manager.THREAD,
            max_workers=max_workers,
            raise_exception=False,
        )
        uris = [join_gcs(bucket_name, b.name) for b in blobs]
        _raise_first_failure(results, uris, "download of")
        for blob, r, uri in zip(blobs, rel, uris, strict=True):
            _verify(tmp / r, blob, uri)
    log.info("downloaded %d files from %s to %s", len(blobs), gs_uri, local_dir)
    return local_dir


def delete_prefix(gs_uri: str, *, client: storage.Client | None = None) -> int:
    """Delete every object under ``gs_uri``; returns how many were deleted."""
    blobs = list_objects(gs_uri, client=client)
    for b in blobs:
        b.delete()
    return len(blobs)
