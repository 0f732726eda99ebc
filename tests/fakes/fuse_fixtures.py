"""pytest fixture ``fuse_fs``: a folder on which directory renames fail as on Cloud Storage
FUSE (tests/fakes/fuse_fs/fuse_like_fs.py), in this process and in every subprocess the test
starts (kfp.local components), via ``sitecustomize`` on ``PYTHONPATH``.

    def test_x(fuse_fs):
        save_model(model, tok, fuse_fs.root / "model")   # must not rename directories
        assert fuse_fs.refused() == []
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.fuse_fs import fuse_like_fs

_LAYER_DIR = Path(fuse_like_fs.__file__).parent


@dataclass
class FuseFs:
    root: Path
    log: Path

    def _lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def refused(self) -> list[str]:
        """Every directory rename the layer refused (this process and subprocesses)."""
        return [line for line in self._lines() if not line.endswith(" installed")]

    def subprocesses(self) -> set[str]:
        """PIDs of the subprocesses that started with the layer installed."""
        return {line.split()[0] for line in self._lines() if line.endswith(" installed")}


@pytest.fixture
def fuse_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FuseFs]:
    root = tmp_path / "gcs"
    root.mkdir()
    log = tmp_path / "fuse-renames.log"
    monkeypatch.setenv(fuse_like_fs.ENV_ROOTS, str(root))
    monkeypatch.setenv(fuse_like_fs.ENV_LOG, str(log))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(_LAYER_DIR) + (os.pathsep + path if path else ""))
    fuse_like_fs.install([root])
    try:
        yield FuseFs(root=root, log=log)
    finally:
        fuse_like_fs.uninstall()
