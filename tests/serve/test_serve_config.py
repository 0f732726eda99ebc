"""The serve section: bad values fail naming the field before any work."""

from __future__ import annotations

import re

import pytest

from medprune.config import parse_config
from medprune.errors import ConfigError


def cfg(**serve):
    return parse_config(
        {"model": {"source": "m", "name": "clinical"}, "evaluate": {"mcq": "x"}, "serve": serve}
    )


def test_defaults() -> None:
    s = cfg().serve
    assert s.gguf.outtypes == ["f16", "q8_0"] and s.ollama.quantization == "q8_0"
    assert s.endpoint.canary_traffic_percent == 10 and s.endpoint.regions == []


@pytest.mark.parametrize(
    ("serve", "message"),
    [
        (
            {"endpoint": {"min_replica_count": 3, "max_replica_count": 2}},
            "max_replica_count 2 < min_replica_count 3",
        ),
        ({"endpoint": {"canary_traffic_percent": 0}}, "serve.endpoint.canary_traffic_percent"),
        (
            {
                "endpoint": {
                    "regions": [
                        {
                            "location": "europe-west4",
                            "staging_bucket": "gs://b-eu",
                            "encryption_spec_key_name": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
                        }
                    ]
                }
            },
            "encryption_spec_key_name is in 'us-central1' but the region is 'europe-west4'",
        ),
        (
            {
                "endpoint": {
                    "regions": [
                        {"location": "us-central1", "staging_bucket": "gs://bucket-a"},
                        {"location": "us-central1", "staging_bucket": "gs://bucket-b"},
                    ]
                }
            },
            "list a location twice",
        ),
        (
            {"endpoint": {"regions": [{"location": "us-central1", "staging_bucket": "s3://x"}]}},
            "must be gs://BUCKET",
        ),
        ({"gguf": {"outtypes": ["q4_k"]}}, "serve.gguf.outtypes"),
        ({"ollama": {"num_ctx": 10}}, "serve.ollama.num_ctx"),
    ],
)
def test_bad_values_name_the_field(serve, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        cfg(**serve)


def test_registry_export_accepts_gguf_only() -> None:
    ok = parse_config(
        {"model": {"source": "m"}, "evaluate": {"mcq": "x"}, "registry": {"export": ["gguf"]}}
    )
    assert ok.registry.export == ["gguf"]
    with pytest.raises(ConfigError, match=re.escape("registry.export")):
        parse_config(
            {"model": {"source": "m"}, "evaluate": {"mcq": "x"}, "registry": {"export": ["onnx"]}}
        )
