"""Parse ``gs://`` and ``vertex://`` URIs, with errors that say what a valid one looks like.

parse_gcs_uri("gs://my-bucket/models/m1")           # ("my-bucket", "models/m1")
parse_vertex_model_uri("vertex://projects/p/locations/us-central1/models/123@production")
# VertexModelRef(project="p", location="us-central1", model_id="123", version_or_alias="production")
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medprune.errors import UriError

# Bucket names: 3-63 chars (up to 222 with dots), lower case, digits, -, _ and .; start and
# end with a letter or digit (https://cloud.google.com/storage/docs/buckets#naming).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.\-]{1,220}[a-z0-9]$")
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_\-.]*"
_VERTEX = re.compile(
    rf"^vertex://projects/(?P<project>{_SEGMENT})/locations/(?P<location>[a-z0-9\-]+)"
    rf"/models/(?P<model_id>{_SEGMENT})(?:@(?P<version>[A-Za-z0-9][A-Za-z0-9\-_]*))?$"
)
_VERTEX_FORM = "vertex://projects/PROJECT/locations/LOCATION/models/ID[@VERSION_OR_ALIAS]"


@dataclass(frozen=True)
class VertexModelRef:
    """A model version in the Vertex AI Model Registry."""

    project: str
    location: str
    model_id: str
    version_or_alias: str | None = None

    @property
    def resource_name(self) -> str:
        """``projects/P/locations/L/models/ID`` (without the version)."""
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"

    @property
    def versioned_name(self) -> str:
        """``projects/P/locations/L/models/ID@VERSION`` (``@default`` when none was given)."""
        return f"{self.resource_name}@{self.version_or_alias or 'default'}"


def parse_gcs_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://BUCKET/PREFIX`` into ``(bucket, prefix)``; the prefix has no leading or
    trailing ``/`` and may be empty. Raises UriError on anything else."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise UriError(f"not a gs:// URI: {uri!r} (expected gs://BUCKET/PATH)")
    rest = uri[len("gs://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise UriError(f"{uri!r}: missing bucket name (expected gs://BUCKET/PATH)")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UriError(
            f"{uri!r}: invalid bucket name {bucket!r} (3-222 characters of lower case letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit)"
        )
    prefix = prefix.strip("/")
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/") if prefix):
        raise UriError(f"{uri!r}: object path must not contain empty, '.' or '..' segments")
    if any(ord(c) < 32 for c in prefix):
        raise UriError(f"{uri!r}: object path contains control characters")
    return bucket, prefix


def parse_vertex_model_uri(uri: str) -> VertexModelRef:
    """Parse ``vertex://projects/P/locations/L/models/ID[@VERSION_OR_ALIAS]``."""
    if not isinstance(uri, str) or not uri.startswith("vertex://"):
        raise UriError(f"not a vertex:// URI: {uri!r} (expected {_VERTEX_FORM})")
    m = _VERTEX.match(uri)
    if not m:
        raise UriError(f"malformed Vertex model URI {uri!r}: expected {_VERTEX_FORM}")
    return VertexModelRef(
        project=m["project"],
        location=m["location"],
        model_id=m["model_id"],
        version_or_alias=m["version"],
    )


def join_gcs(bucket: str, *parts: str) -> str:
    """``gs://BUCKET/part/part`` with single slashes."""
    path = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    return f"gs://{bucket}/{path}" if path else f"gs://{bucket}"
