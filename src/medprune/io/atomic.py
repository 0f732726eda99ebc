"""Writes that readers never see half done, on local disks and on Cloud Storage FUSE.

Files are written to a temporary sibling and renamed (file renames work everywhere,
including Cloud Storage FUSE). Directories are different: on Vertex AI every artifact lives
on Cloud Storage FUSE (``/gcs/...``), which does not rename non-empty directories unless the
bucket has a hierarchical namespace or the mount sets ``rename-dir-limit``. So a directory
that must appear complete or not at all (a saved model, a downloaded model) is written in
place and finished with a **completion marker** (:data:`COMPLETE_MARKER`, written last, a
file rename): it lists every file and its size, and :func:`check_complete` (which every
reader of such a directory calls) refuses a directory without it or whose files do not match.

:func:`atomic_directory` (write a temporary sibling, rename it) stays for places that are
never on an object store: the local registry and caches on a local disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medprune.errors import MedpruneError

#: Files medprune writes into its directories start with this; a directory holding them
#: and no marker is the leftover of an interrupted write.
OWN_PREFIX = "medprune_"
#: Written last into a directory made by :func:`marked_directory`.
COMPLETE_MARKER = "medprune_complete.json"
MARKER_FORMAT = 1


class IncompleteDirectoryError(MedpruneError):
    """A directory was not finished by its writer (no or a mismatching completion marker)."""


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # a file rename: fine on Cloud Storage FUSE
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """:func:`atomic_write_text` for bytes, written as they are."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success it is renamed to ``final``.

    On any exception the temporary directory is removed and ``final`` is untouched.
    ``final`` must not exist yet (versions are never overwritten). Needs a file system that
    renames directories: use :func:`marked_directory` for anything that may be on Cloud
    Storage FUSE.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        os.rename(tmp, final)  # fails if final exists and is non-empty: no overwrite
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _files(directory: Path) -> dict[str, int]:
    return {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != COMPLETE_MARKER and not p.name.endswith(".tmp")
    }


def write_completion_marker(directory: str | Path) -> Path:
    """Record every file under ``directory`` with its size, as the last write."""
    directory = Path(directory)
    marker = directory / COMPLETE_MARKER
    atomic_write_json(
        marker,
        {
            "format": MARKER_FORMAT,
            "files": _files(directory),
            "completed_at": datetime.now(timezone.utc).isoformat(),
        },
    )
    return marker


def is_complete(directory: str | Path) -> bool:
    try:
        check_complete(directory)
    except IncompleteDirectoryError:
        return False
    return True


def check_complete(directory: str | Path) -> dict[str, int]:
    """The files of a finished directory (name -> bytes), or :class:`IncompleteDirectoryError`
    saying why it is not finished (no marker, a listed file missing or of another size)."""
    directory = Path(directory)
    marker = directory / COMPLETE_MARKER
    why = "its writer did not finish (interrupted or still running) or it changed since; write it again"
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        files = record["files"]
        if record.get("format") != MARKER_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {record.get('format')!r}")
    except FileNotFoundError:
        raise IncompleteDirectoryError(
            f"{directory}: incomplete, no {COMPLETE_MARKER}: {why}"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IncompleteDirectoryError(
            f"{directory}: unreadable {COMPLETE_MARKER} ({exc}): {why}"
        ) from None
    for rel, size in files.items():
        path = directory / rel
        if not path.is_file():
            raise IncompleteDirectoryError(f"{directory}: incomplete, {rel} is missing: {why}")
        if path.stat().st_size != size:
            raise IncompleteDirectoryError(
                f"{directory}: incomplete, {rel} has {path.stat().st_size} bytes, the marker says {size}: {why}"
            )
    return dict(files)


def _clear(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@contextmanager
def marked_directory(final: str | Path) -> Iterator[Path]:
    """Write the directory ``final`` in place and mark it complete when the block succeeds.

    No directory is renamed, so this works on Cloud Storage FUSE. ``final`` may not exist,
    be empty (kfp creates artifact directories up front) or hold the leftovers of an
    interrupted earlier attempt (``medprune_*`` files but no marker: they are deleted first);
    a complete directory, or one holding other files, is never overwritten. On an exception what was written is deleted and
    no marker is written, so readers calling :func:`check_complete` never take it for done.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"{final}: exists and is not a directory")
    if final.is_dir() and any(final.iterdir()):
        if (final / COMPLETE_MARKER).exists():
            raise FileExistsError(
                f"{final}: already holds a complete result; refusing to overwrite it"
            )
        if not any(p.name.startswith(OWN_PREFIX) for p in final.iterdir()):
            raise FileExistsError(
                f"{final}: holds files medprune did not write; refusing to delete them"
            )
        _clear(final)  # an interrupted medprune attempt (a retried task) left these
    final.mkdir(parents=True, exist_ok=True)
    try:
        yield final
        write_completion_marker(final)
    except BaseException:
        _clear(final)
        raise


def copy_complete_directory(src: str | Path, dst: str | Path) -> Path:
    """Copy the files of ``src`` into ``dst`` (see :func:`marked_directory`), marker last."""
    src = Path(src)
    with marked_directory(dst) as out:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if path.is_file() and path.name != COMPLETE_MARKER:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out / rel)
    return Path(dst)
