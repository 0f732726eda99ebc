import pytest

from medprune.errors import DataError
from medprune.io.fuse import gcs_fuse_path, gcs_fuse_root, gcs_uri, localize, on_vertex_mount


def test_gs_uri_maps_to_fuse_mount_and_is_read_there(tmp_path):
    assert gcs_fuse_path("gs://bucket/data/r.jsonl") == "/gcs/bucket/data/r.jsonl"
    assert gcs_fuse_path("gs://b/x.jsonl", root=str(tmp_path)) == f"{tmp_path}/b/x.jsonl"
    with pytest.raises(DataError, match="malformed gs:// URI"):
        gcs_fuse_path("gs://")


def test_vertex_mount_paths_map_back_to_gs_uris_and_nothing_else_does():
    assert (
        on_vertex_mount("/gcs/b/x/y")
        and not on_vertex_mount("/gcsx/b")
        and not on_vertex_mount("gs://b/x")
    )
    assert gcs_uri("/gcs/b/x/y") == "gs://b/x/y"
    assert gcs_uri("/tmp/x") == "/tmp/x" and gcs_uri("gs://b/x") == "gs://b/x"


def test_localize_reads_gs_files_through_the_configured_mount(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPRUNE_GCS_FUSE_ROOT", str(tmp_path / "mnt"))
    assert gcs_fuse_root() == str(tmp_path / "mnt")
    mounted = tmp_path / "mnt" / "bucket" / "data" / "r.jsonl"
    mounted.parent.mkdir(parents=True)
    mounted.write_text('{"text": "x"}\n')
    assert localize("gs://bucket/data/r.jsonl") == mounted
    assert localize(str(tmp_path / "local.jsonl")) == tmp_path / "local.jsonl"  # local: as given


def test_localize_refuses_other_schemes_and_bucket_only_uris(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPRUNE_GCS_FUSE_ROOT", str(tmp_path / "no-mount"))
    with pytest.raises(DataError, match="unsupported scheme"):
        localize("s3://bucket/r.jsonl")
    with pytest.raises(DataError, match="malformed gs:// URI"):
        localize("gs://bucket")
