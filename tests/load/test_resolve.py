"""Model sources: local directories, gs:// prefixes and vertex:// versions (over loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medprune.errors import ModelLoadError, UriError
from medprune.io.gcs import upload_dir
from medprune.load.resolve import resolve_model_source


def _model(root: Path, marker: str) -> Path:
    d = root / f"src-{marker}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(f'{{"marker": "{marker}"}}')
    (d / "model.safetensors").write_bytes(marker.encode() * 1000)
    return d


def test_local_dir_passthrough(tmp_path: Path) -> None:
    d = _model(tmp_path, "a")
    assert resolve_model_source(str(d), tmp_path / "work") == d
    assert not (tmp_path / "work").exists()  # nothing copied


def test_local_missing_and_not_a_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope: model directory not found"):
        resolve_model_source(str(tmp_path / "nope"), tmp_path)
    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a directory"):
        resolve_model_source(str(f), tmp_path)
    with pytest.raises(UriError, match="unsupported scheme"):
        resolve_model_source("s3://bucket/model", tmp_path)


def test_gcs_source_downloads_once(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("models-bucket")
    upload_dir(_model(tmp_path, "g"), "gs://models-bucket/llama/v1")
    out = resolve_model_source("gs://models-bucket/llama/v1", tmp_path / "work")
    assert out.parent == tmp_path / "work" / "sources"
    assert (out / "config.json").read_text() == '{"marker": "g"}'
    again = resolve_model_source("gs://models-bucket/llama/v1", tmp_path / "work")
    assert again == out


def test_gcs_source_missing_objects(tmp_path: Path, gcs_emulator) -> None:
    gcs_emulator.create_bucket("models-bucket")
    with pytest.raises(ModelLoadError, match=r"gs://models-bucket/nothing.*no objects"):
        resolve_model_source("gs://models-bucket/nothing", tmp_path)


@pytest.mark.parametrize(
    "source",
    [
        "gs://Bad_Bucket/x",
        "vertex://projects/p/models/1",
        "vertex://projects/p/locations/us-central1/models/",
        "vertex://projects/p/locations/us-central1/models/1@",
        "vertex://projects/p/locations/us-central1/models/1@a@b",
    ],
)
def test_malformed_uris(tmp_path: Path, source: str) -> None:
    with pytest.raises(UriError, match=r"expected|invalid bucket"):
        resolve_model_source(source, tmp_path)


def test_vertex_source_by_alias_and_version(tmp_path: Path, vertex_env) -> None:
    fake = vertex_env.vertex
    upload_dir(_model(tmp_path, "v1"), f"gs://{vertex_env.bucket}/models/m/v1")
    name = fake.add_model(
        "m",
        "medprune-test",
        "us-central1",
        aliases=["production"],
        artifact_uri=f"gs://{vertex_env.bucket}/models/m/v1",
    )
    model_id = name.rsplit("/", 1)[1]
    out = resolve_model_source(
        f"vertex://projects/medprune-test/locations/us-central1/models/{model_id}@production",
        tmp_path / "work",
    )
    assert (out / "config.json").read_text() == '{"marker": "v1"}'
    (get,) = fake.find("GET", rf"/models/{model_id}@production$")
    assert (
        get.path == f"/v1/projects/medprune-test/locations/us-central1/models/{model_id}@production"
    )
    out1 = resolve_model_source(
        f"vertex://projects/medprune-test/locations/us-central1/models/{model_id}@1",
        tmp_path / "work",
    )
    assert out1 != out and (out1 / "model.safetensors").read_bytes() == b"v1" * 1000


def test_vertex_source_missing_version(tmp_path: Path, vertex_env) -> None:
    name = vertex_env.vertex.add_model("m", "medprune-test", "us-central1")
    model_id = name.rsplit("/", 1)[1]
    with pytest.raises(ModelLoadError, match=rf"models/{model_id}@staging not found"):
        resolve_model_source(
            f"vertex://projects/medprune-test/locations/us-central1/models/{model_id}@staging",
            tmp_path,
        )
    with pytest.raises(ModelLoadError, match="models/999@default not found"):
        resolve_model_source(
            "vertex://projects/medprune-test/locations/us-central1/models/999", tmp_path
        )
