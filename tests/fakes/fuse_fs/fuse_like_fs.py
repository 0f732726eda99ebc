"""A file system layer that refuses directory renames, as Cloud Storage FUSE does.

Cloud Storage FUSE (where Vertex AI Pipelines puts every artifact, under ``/gcs/``) renames
files (copy + delete) but refuses to rename a directory unless the bucket has a
hierarchical namespace or the mount sets ``rename-dir-limit``. This module patches the
OS-level calls (``os.rename``, ``os.replace``, ``os.renames``; ``pathlib.Path.rename`` /
``replace`` and ``shutil.move`` go through them) so that renaming a directory under one of
the given roots fails with ``ENOTSUP``, while file renames keep working.

In this process: ``install([root, ...])``. In subprocesses (kfp.local runs each component
as one): put this folder on ``PYTHONPATH`` and set ``MEDPRUNE_TEST_FUSE_ROOTS`` (roots
joined by ``os.pathsep``); ``sitecustomize.py`` here then installs it at interpreter start.
Every refused rename is appended to ``$MEDPRUNE_TEST_FUSE_LOG`` (if set), so a test can
show the layer was active in the subprocesses.
"""

from __future__ import annotations

import errno
import os

ENV_ROOTS = "MEDPRUNE_TEST_FUSE_ROOTS"
ENV_LOG = "MEDPRUNE_TEST_FUSE_LOG"
_original: dict[str, object] = {}
_roots: list[str] = []


def _under_roots(path) -> bool:
    p = os.path.abspath(os.fsdecode(path))
    return any(p == r or p.startswith(r + os.sep) for r in _roots)


def _check(src, dst, call: str) -> None:
    if isinstance(src, int) or isinstance(dst, int):
        return
    if os.path.isdir(src) and not os.path.islink(src) and (_under_roots(src) or _under_roots(dst)):
        log = os.environ.get(ENV_LOG)
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {call} {os.fsdecode(src)} -> {os.fsdecode(dst)}\n")
        raise OSError(
            errno.ENOTSUP,
            f"{call}: directory rename is not supported on this file system (like Cloud Storage "
            "FUSE without rename-dir-limit)",
            os.fsdecode(src),
        )


def _wrap(name: str):
    real = _original[name]

    def refusing(src, dst, *args, **kwargs):
        _check(src, dst, f"os.{name}")
        return real(src, dst, *args, **kwargs)  # type: ignore[operator]

    refusing.__name__ = name
    return refusing


def install(roots) -> None:
    """Refuse directory renames under ``roots`` in this process (idempotent)."""
    _roots[:] = [os.path.abspath(os.fspath(r)) for r in roots if os.fspath(r)]
    for name in ("rename", "replace", "renames"):
        if name not in _original:
            _original[name] = getattr(os, name)
            setattr(os, name, _wrap(name))


def uninstall() -> None:
    for name, real in _original.items():
        setattr(os, name, real)
    _original.clear()
    _roots.clear()


def install_from_env() -> None:
    roots = [r for r in os.environ.get(ENV_ROOTS, "").split(os.pathsep) if r]
    if roots:
        install(roots)


def record_install() -> None:
    """Append ``PID installed`` to the log: proof that a subprocess ran with the layer."""
    log = os.environ.get(ENV_LOG)
    if log and _roots:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} installed\n")
