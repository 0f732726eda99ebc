"""Directories readers never take for finished while half written, on a file system that
refuses directory renames like Cloud Storage FUSE (the ``fuse_fs`` fixture)."""

import json
import re

import pytest

from medprune.io.atomic import (
    COMPLETE_MARKER,
    IncompleteDirectoryError,
    atomic_directory,
    atomic_write_json,
    check_complete,
    copy_complete_directory,
    marked_directory,
)


def test_the_test_layer_refuses_directory_renames_but_not_file_renames(fuse_fs):
    atomic_write_json(fuse_fs.root / "a.json", {"x": 1})  # file rename: allowed
    assert json.loads((fuse_fs.root / "a.json").read_text()) == {"x": 1}
    with (
        pytest.raises(OSError, match="directory rename is not supported"),
        atomic_directory(fuse_fs.root / "model") as tmp,
    ):
        (tmp / "w").write_text("x")
    assert not (fuse_fs.root / "model").exists()
    assert len(fuse_fs.refused()) == 1


def test_marked_directory_works_without_directory_renames(fuse_fs):
    out = fuse_fs.root / "model"
    out.mkdir()  # kfp creates artifact folders up front
    with marked_directory(out) as d:
        (d / "medprune_config.json").write_text("{}")
        (d / "sub").mkdir()
        (d / "sub" / "w.bin").write_bytes(b"1234")
    assert check_complete(out) == {"medprune_config.json": 2, "sub/w.bin": 4}
    assert fuse_fs.refused() == []


def test_interrupted_write_is_never_complete_and_is_cleared(tmp_path):
    out = tmp_path / "model"

    def killed_while_writing() -> None:
        with marked_directory(out) as d:
            (d / "medprune_config.json").write_text("{}")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        killed_while_writing()
    assert list(out.iterdir()) == []
    # a writer killed without cleaning up (SIGKILL, preemption) leaves files but no marker
    (out / "medprune_config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"half")
    with pytest.raises(IncompleteDirectoryError, match=f"no {COMPLETE_MARKER}"):
        check_complete(out)
    with marked_directory(out) as d:  # the retried task writes it again
        (d / "model.safetensors").write_bytes(b"whole")
    assert check_complete(out) == {"model.safetensors": 5}


def test_truncated_file_makes_directory_incomplete(tmp_path):
    with marked_directory(tmp_path / "m") as d:
        (d / "w.bin").write_bytes(b"12345678")
    (tmp_path / "m" / "w.bin").write_bytes(b"1234")
    with pytest.raises(
        IncompleteDirectoryError, match=re.escape("w.bin has 4 bytes, the marker says 8")
    ):
        check_complete(tmp_path / "m")


def test_complete_or_foreign_directories_are_never_overwritten(tmp_path):
    with marked_directory(tmp_path / "m") as d:
        (d / "w.bin").write_bytes(b"1")
    with (
        pytest.raises(FileExistsError, match="already holds a complete result"),
        marked_directory(tmp_path / "m"),
    ):
        pass
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="did not write"), marked_directory(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_copy_writes_the_marker_last(fuse_fs):
    with marked_directory(fuse_fs.root / "a") as d:
        (d / "w.bin").write_bytes(b"12")
    copy_complete_directory(fuse_fs.root / "a", fuse_fs.root / "b")
    assert check_complete(fuse_fs.root / "b") == {"w.bin": 2}
    assert fuse_fs.refused() == []
