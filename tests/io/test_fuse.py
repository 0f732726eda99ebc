import pytest

from medprune.errors import DataError
from medprune.io.fuse import gcs_fuse_path


def test_gs_uri_maps_to_fuse_mount_and_is_read_there(tmp_path):
    assert gcs_fuse_path("gs://bucket/data/r.jsonl") == "/gcs/bucket/data/r.jsonl"
    assert gcs_fuse_path("gs://b/x.jsonl", root=str(tmp_path)) == f"{tmp_path}/b/x.jsonl"
    with pytest.raises(DataError, match="malformed gs:// URI"):
        gcs_fuse_path("gs://")
