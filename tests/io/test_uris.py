from __future__ import annotations

import pytest

from medprune.errors import UriError
from medprune.io.uris import VertexModelRef, join_gcs, parse_gcs_uri, parse_vertex_model_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("gs://my-bucket", ("my-bucket", "")),
        ("gs://my-bucket/", ("my-bucket", "")),
        ("gs://my-bucket/models/m1/", ("my-bucket", "models/m1")),
        ("gs://a.b_c-1/x/y.json", ("a.b_c-1", "x/y.json")),
    ],
)
def test_parse_gcs(uri, expected) -> None:
    assert parse_gcs_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket/x", "not a gs:// URI"),
        ("gs:/bucket/x", "not a gs:// URI"),
        ("gs:///x", "missing bucket"),
        ("gs://ab/x", "invalid bucket name 'ab'"),
        ("gs://My-Bucket/x", "invalid bucket name"),
        ("gs://bucket-/x", "invalid bucket name"),
        ("gs://bucket/a//b", "empty"),
        ("gs://bucket/a/../b", "'..'"),
    ],
)
def test_malformed_gcs(uri, message) -> None:
    with pytest.raises(UriError, match=message) as err:
        parse_gcs_uri(uri)
    assert uri in str(err.value)


def test_parse_vertex() -> None:
    ref = parse_vertex_model_uri(
        "vertex://projects/my-proj/locations/europe-west4/models/123@production"
    )
    assert ref == VertexModelRef("my-proj", "europe-west4", "123", "production")
    assert ref.resource_name == "projects/my-proj/locations/europe-west4/models/123"
    assert ref.versioned_name.endswith("models/123@production")
    plain = parse_vertex_model_uri("vertex://projects/p/locations/us-central1/models/7")
    assert plain.version_or_alias is None and plain.versioned_name.endswith("@default")


@pytest.mark.parametrize(
    "uri",
    [
        "vertex://projects/p/locations/l",
        "vertex://projects/p/models/1",
        "vertex://projects//locations/us-central1/models/1",
        "vertex://projects/p/locations/us-central1/models/1/extra",
        "vertex://projects/p/locations/us-central1/models/1@",
        "gs://projects/p/locations/us-central1/models/1",
    ],
)
def test_malformed_vertex(uri) -> None:
    with pytest.raises(UriError, match="vertex://projects/PROJECT/locations/LOCATION/models/ID"):
        parse_vertex_model_uri(uri)


def test_join() -> None:
    assert join_gcs("b", "/a/", "", "c") == "gs://b/a/c"
    assert join_gcs("b") == "gs://b"
