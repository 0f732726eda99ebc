"""Model directories to and from Cloud Storage, against the gcp-storage-emulator."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import google_crc32c
import pytest

from medprune.errors import StorageError, UriError
from medprune.io.gcs import delete_prefix, download_dir, file_checksums, upload_dir


def _model_dir(root: Path) -> Path:
    d = root / "model"
    (d / "tokenizer").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "model.safetensors").write_bytes(os.urandom(300_000))
    (d / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    (d / "empty.txt").write_bytes(b"")
    return d


def test_file_checksums_match_google_crc32c(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"medprune" * 1000)
    crc, md5 = file_checksums(p)
    assert base64.b64decode(crc) == google_crc32c.Checksum(b"medprune" * 1000).digest()
    assert len(base64.b64decode(md5)) == 16


def test_upload_then_download_round_trip(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("medprune-test")
    src = _model_dir(tmp_path)
    uris = upload_dir(src, "gs://medprune-test/models/m1/", max_workers=4)
    assert uris == [
        "gs://medprune-test/models/m1/config.json",
        "gs://medprune-test/models/m1/empty.txt",
        "gs://medprune-test/models/m1/model.safetensors",
        "gs://medprune-test/models/m1/tokenizer/tokenizer.json",
    ]
    assert gcs_emulator.objects("medprune-test") == [u[len("gs://medprune-test/") :] for u in uris]

    out = download_dir("gs://medprune-test/models/m1", tmp_path / "copy")
    for f in src.rglob("*"):
        if f.is_file():
            assert (out / f.relative_to(src)).read_bytes() == f.read_bytes()
    # no temporary directories left beside the result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "model"]


def test_upload_refuses_to_overwrite_an_existing_version(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("medprune-test")
    src = _model_dir(tmp_path)
    upload_dir(src, "gs://medprune-test/models/m1")
    (src / "config.json").write_text('{"changed": true}')
    with pytest.raises(StorageError, match="already has objects"):
        upload_dir(src, "gs://medprune-test/models/m1")
    blob = gcs_emulator.client().bucket("medprune-test").get_blob("models/m1/config.json")
    assert blob.download_as_bytes() == b'{"model_type": "llama"}'


def test_download_of_missing_prefix_names_it(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("medprune-test")
    with pytest.raises(StorageError, match=r"gs://medprune-test/models/nope: no objects"):
        download_dir("gs://medprune-test/models/nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_from_missing_bucket(tmp_path: Path, gcs_emulator) -> None:
    with pytest.raises(StorageError, match="no-such-bucket"):
        download_dir("gs://no-such-bucket/models/m1", tmp_path / "out")


def test_upload_to_missing_bucket_fails_clearly(tmp_path: Path, gcs_emulator) -> None:
    with pytest.raises(StorageError, match="no-such-bucket"):
        upload_dir(_model_dir(tmp_path), "gs://no-such-bucket/m")


def test_download_detects_corrupted_object(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("medprune-test")
    upload_dir(_model_dir(tmp_path), "gs://medprune-test/m")
    gcs_emulator.corrupt("medprune-test", "m/config.json", b'{"model_type": "llamb"}')
    with pytest.raises(StorageError, match=r"gs://medprune-test/m/config.json"):
        download_dir("gs://medprune-test/m", tmp_path / "out")
    # nothing half-downloaded is left at the destination or beside it
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_download_into_non_empty_dir_refused(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("medprune-test")
    upload_dir(_model_dir(tmp_path), "gs://medprune-test/m")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(StorageError, match="not empty"):
        download_dir("gs://medprune-test/m", dest)
    assert (dest / "keep.txt").read_text() == "mine"


def test_delete_prefix(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("medprune-test")
    upload_dir(_model_dir(tmp_path), "gs://medprune-test/a")
    upload_dir(_model_dir(tmp_path / "2"), "gs://medprune-test/ab")
    assert delete_prefix("gs://medprune-test/a") == 4
    assert all(n.startswith("ab/") for n in gcs_emulator.objects("medprune-test"))


@pytest.mark.parametrize("uri", ["s3://b/x", "gs://", "gs://UPPER/x", "gs://b/../x"])
def test_bad_uris(tmp_path: Path, uri: str) -> None:
    with pytest.raises(UriError):
        download_dir(uri, tmp_path / "o")


def test_missing_local_dir(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="model directory not found"):
        upload_dir(tmp_path / "nope", "gs://medprune-test/x")


def test_non_loopback_traffic_is_refused_in_tests() -> None:
    import socket

    with pytest.raises(OSError, match="loopback"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1, never reached
    with pytest.raises(OSError, match="loopback"):
        socket.getaddrinfo("storage.googleapis.com", 443)
