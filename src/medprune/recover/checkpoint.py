"""Resumable training checkpoints that survive preemption.

A checkpoint is a folder ``checkpoint-STEP`` holding accelerate's state (model, optimizer,
RNG; sharded under FSDP), ``trainer_state.json`` (step, samples seen, early-stopping state)
and ``manifest.json`` (size and sha256 of every file), written last. The folder is written
in place (Cloud Storage FUSE, where checkpoints live on Vertex AI, does not rename
directories): it holds ``saving.in-progress`` from its first write until after its manifest,
so a run killed mid-save leaves a folder that is recognised as unfinished and deleted, while
a folder that lost its manifest later is refused as corrupt. A checkpoint whose manifest or files do not match is refused with
:class:`~medprune.errors.RecoveryError`; training never silently restarts from zero.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from medprune.errors import RecoveryError
from medprune.io.atomic import atomic_write_json

MANIFEST = "manifest.json"
#: Written first into a checkpoint folder and deleted after its manifest: a folder holding
#: it is an interrupted save (deleted on the next start); one without it but also without a
#: manifest lost its manifest and is refused as corrupt.
SAVING = "saving.in-progress"
TRAINER_STATE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(ckpt_dir: Path, state: dict[str, Any]) -> None:
    """Write ``trainer_state.json`` then ``manifest.json`` covering every file in ``ckpt_dir``."""
    atomic_write_json(ckpt_dir / TRAINER_STATE, state)
    files = {}
    for p in sorted(ckpt_dir.rglob("*")):
        if p.is_file() and p.name not in (MANIFEST, SAVING) and not p.name.endswith(".tmp"):
            rel = p.relative_to(ckpt_dir).as_posix()
            files[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    atomic_write_json(
        ckpt_dir / MANIFEST, {"format": FORMAT_VERSION, "step": state["step"], "files": files}
    )


def verify_checkpoint(ckpt_dir: str | Path) -> dict[str, Any]:
    """Check a checkpoint against its manifest; return its trainer state or raise
    :class:`RecoveryError` saying what is wrong."""
    ckpt_dir = Path(ckpt_dir)
    hint = "delete it (or set recover.resume: false) to start over deliberately"
    manifest_path = ckpt_dir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise RecoveryError(f"checkpoint {ckpt_dir} is corrupt: no {MANIFEST}; {hint}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecoveryError(
            f"checkpoint {ckpt_dir} is corrupt: unreadable {MANIFEST} ({exc}); {hint}"
        ) from None
    if manifest.get("format") != FORMAT_VERSION:
        raise RecoveryError(
            f"checkpoint {ckpt_dir}: format {manifest.get('format')!r} is not {FORMAT_VERSION}; {hint}"
        )
    for rel, meta in files.items():
        p = ckpt_dir / rel
        if not p.is_file():
            raise RecoveryError(f"checkpoint {ckpt_dir} is corrupt: {rel} is missing; {hint}")
        if p.stat().st_size != meta["bytes"] or _sha256(p) != meta["sha256"]:
            raise RecoveryError(
                f"checkpoint {ckpt_dir} is corrupt: {rel} does not match its checksum; {hint}"
            )
    if TRAINER_STATE not in files:
        raise RecoveryError(f"checkpoint {ckpt_dir} is corrupt: no {TRAINER_STATE}; {hint}")
    state = json.loads((ckpt_dir / TRAINER_STATE).read_text())
    if state.get("step") != manifest.get("step"):
        raise RecoveryError(
            f"checkpoint {ckpt_dir} is corrupt: manifest and trainer state disagree on the step"
        )
    return state


def _all_checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    found = []
    if root.is_dir():
        for p in root.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
    return sorted(found)


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Checkpoints under ``root`` as ``(step, path)``, oldest first: every ``checkpoint-STEP``
    folder whose save was not interrupted (:func:`verify_checkpoint` checks its contents)."""
    return [(s, p) for s, p in _all_checkpoint_dirs(Path(root)) if not (p / SAVING).exists()]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def checkpoint_dir_for(root: str | Path, step: int) -> Path:
    return Path(root) / f"checkpoint-{step}"


def start_checkpoint(root: str | Path, step: int) -> Path:
    """An empty ``checkpoint-STEP`` folder to save into (call on the main process only): a
    folder of that name left by an interrupted save, or an older finished one of the same
    step, is deleted first."""
    target = checkpoint_dir_for(root, step)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / SAVING).write_text("")
    return target


def finish_checkpoint(root: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the manifest of ``checkpoint-STEP`` (which makes it a checkpoint) and delete all
    but the newest ``keep`` checkpoints (call on the main process only)."""
    root = Path(root)
    final = checkpoint_dir_for(root, step)
    write_manifest(final, state)
    (final / SAVING).unlink()
    for _, old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clear_partials(root: str | Path) -> None:
    """Remove folders left by a save that was interrupted: ``checkpoint-STEP`` still holding
    :data:`SAVING` (and ``.checkpoint-*.partial`` from medprune versions that renamed folders)."""
    root = Path(root)
    if not root.is_dir():
        return
    for _, p in _all_checkpoint_dirs(root):
        if (p / SAVING).exists():
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".checkpoint-*.partial"):
        shutil.rmtree(p, ignore_errors=True)
