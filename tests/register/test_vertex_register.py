"""register_vertex against the Cloud Storage emulator and the fake Vertex AI server."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from medprune.config import parse_config
from medprune.errors import ConfigError, RegistryError
from medprune.io.gcs import download_dir
from medprune.register.vertex import model_labels, promote_version, register_vertex

CMEK = "projects/medprune-test/locations/us-central1/keyRings/kr/cryptoKeys/models"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    d = tmp_path_factory.mktemp("tiny") / "model"
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def make_cfg(vertex: dict, **registry) -> object:
    return parse_config(
        {
            "run_name": "nightly",
            "model": {"source": "/models/clinical-llama-3b", "name": "clinical-llama"},
            "prune": {"method": "wanda", "sparsity": 0.5, "pattern": "2:4"},
            "evaluate": {"mcq": "mcq.jsonl"},
            "registry": {"target": "vertex", **registry},
            "vertex": vertex,
        }
    )


METRICS = {
    "metrics": {"accuracy": 0.61, "baseline_accuracy": 0.64, "perplexity_ratio": 1.08},
    "run_id": "run-42",
}


def test_new_model_then_new_version_moves_aliases(vertex_env, tiny_model_dir) -> None:
    fake = vertex_env.vertex
    cfg = make_cfg(
        vertex_env.vertex_section(
            promotion_alias="production",
            encryption_spec_key_name=CMEK,
            labels={"team": "clinical-ai"},
        )
    )
    first = register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    model_id = first["resource_name"].rsplit("/", 1)[1]
    assert first["version_id"] == "1"
    assert first["uri"] == (
        f"https://us-central1-aiplatform.googleapis.com/v1/{first['resource_name']}@1"
    )
    assert first["vertex_model_metadata"] == {"resourceName": first["resource_name"] + "@1"}
    assert set(first["aliases"]) == {"candidate", "production", "default"}

    (upload,) = fake.find("POST", r"models:upload$")
    body = upload.json
    assert "parentModel" not in body  # no model of that name yet: a new model
    m = body["model"]
    assert m["displayName"] == "clinical-llama"
    assert m["artifactUri"] == first["artifact_uri"]
    assert m["artifactUri"].startswith("gs://medprune-test-bucket/models/clinical-llama/run-42-")
    assert sorted(m["versionAliases"]) == ["candidate", "production"]  # is_default_version off
    assert m["encryptionSpec"] == {"kmsKeyName": CMEK}
    assert m["labels"] == {
        "medprune": "true",
        "method": "wanda",
        "sparsity": "0_5",
        "pattern": "2-4",
        "base-model": "clinical-llama-3b",
        "gate": "passed",
        "team": "clinical-ai",
    }
    assert "accuracy=0.61" in m["description"] and "wanda" in m["description"]
    assert m["containerSpec"]["imageUri"].startswith("us-docker.pkg.dev/vertex-ai/")
    assert f"--model={first['artifact_uri']}" in m["containerSpec"]["args"]
    # the files in the bucket are the model, byte for byte
    copy = download_dir(first["artifact_uri"], tiny_model_dir.parent / "copy1")
    for f in tiny_model_dir.iterdir():
        assert (copy / f.name).read_bytes() == f.read_bytes()

    second = register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    assert second["resource_name"] == first["resource_name"]
    assert second["version_id"] == "2"
    assert second["artifact_uri"] != first["artifact_uri"]
    upload2 = fake.find("POST", r"models:upload$")[1].json
    assert upload2["parentModel"] == first["resource_name"]  # found by display name
    aliases = fake.aliases(model_id)
    assert sorted(aliases["2"]) == ["candidate", "production"]
    assert aliases["1"] == ["default"]  # aliases moved off version 1; default stays


def test_explicit_parent_model_and_default_version(vertex_env, tiny_model_dir) -> None:
    fake = vertex_env.vertex
    parent = fake.add_model("clinical-llama", "medprune-test", "us-central1", aliases=["candidate"])
    fake.add_model("clinical-llama", "medprune-test", "us-central1")  # same name, ignored
    parent_id = parent.rsplit("/", 1)[1]
    cfg = make_cfg(
        vertex_env.vertex_section(parent_model=parent_id, is_default_version=True),
        aliases=["candidate", "nightly"],
    )
    out = register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    body = fake.find("POST", r"models:upload$")[-1].json
    assert body["parentModel"] == parent
    assert sorted(body["model"]["versionAliases"]) == ["candidate", "default", "nightly"]
    assert out["resource_name"] == parent and out["version_id"] == "2"
    assert fake.aliases(parent_id) == {"1": [], "2": ["candidate", "nightly", "default"]}
    assert not fake.find("GET", r"/models$")  # no lookup by name when the parent is given


def test_missing_parent_model_is_a_clear_error_and_uploads_nothing(
    vertex_env, tiny_model_dir
) -> None:
    cfg = make_cfg(vertex_env.vertex_section(parent_model="424242"))
    with pytest.raises(RegistryError, match=r"models/424242 not found"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    assert not vertex_env.vertex.find("POST", r"models:upload$")
    assert vertex_env.gcs.objects(vertex_env.bucket) == []


def test_failed_gate_sends_nothing(vertex_env, tiny_model_dir) -> None:
    cfg = make_cfg(vertex_env.vertex_section(promotion_alias="production"))
    with pytest.raises(RegistryError, match="gate did not pass"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=False)
    assert vertex_env.vertex.requests == []
    assert vertex_env.gcs.objects(vertex_env.bucket) == []


@pytest.mark.parametrize("failure", ["operation", "http"])
def test_upload_failing_midway_registers_nothing(vertex_env, tiny_model_dir, failure) -> None:
    fake = vertex_env.vertex
    parent = fake.add_model(
        "clinical-llama", "medprune-test", "us-central1", aliases=["production"]
    )
    parent_id = parent.rsplit("/", 1)[1]
    before = fake.aliases(parent_id)
    if failure == "operation":
        fake.fail_next_upload_operation("importing model artifacts failed: disk quota")
        expected = "disk quota"
    else:
        fake.fail_next("POST", r"models:upload$", status=503, message="backend unavailable")
        expected = "backend unavailable"
    cfg = make_cfg(vertex_env.vertex_section(promotion_alias="production"))
    with pytest.raises(RegistryError, match=f"no version was created.*{expected}"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    assert fake.aliases(parent_id) == before  # production still on version 1
    assert len(fake.models[parent_id].versions) == 1
    assert not fake.find("POST", r"mergeVersionAliases")
    # the uploaded files were cleaned up: nothing half registered in the bucket either
    assert vertex_env.gcs.objects(vertex_env.bucket) == []


def test_not_a_model_dir(vertex_env, tmp_path) -> None:
    cfg = make_cfg(vertex_env.vertex_section())
    with pytest.raises(RegistryError, match="no config.json"):
        register_vertex(tmp_path, cfg=cfg, metadata={}, gate_passed=True)
    assert vertex_env.vertex.requests == []


def test_promote_version_moves_alias(vertex_env) -> None:
    fake = vertex_env.vertex
    name = fake.add_model("clinical-llama", "medprune-test", "us-central1", aliases=["production"])
    model_id = name.rsplit("/", 1)[1]
    fake.models[model_id].versions.append(
        {**fake.models[model_id].versions[0], "versionId": "2", "versionAliases": ["candidate"]}
    )
    cfg = make_cfg(vertex_env.vertex_section())
    aliases = promote_version(cfg, name, "2", "production")
    assert sorted(aliases) == ["candidate", "production"]
    (merge,) = fake.find("POST", r"mergeVersionAliases$")
    assert merge.path.endswith(f"models/{model_id}@2:mergeVersionAliases")
    assert merge.json["versionAliases"] == ["production"]
    assert fake.aliases(model_id)["1"] == ["default"]
    with pytest.raises(RegistryError, match="not found; no alias moved"):
        promote_version(cfg, name, "9", "production")


def test_vertex_target_requires_vertex_section() -> None:
    with pytest.raises(ConfigError, match="vertex' section is missing"):
        parse_config(
            {"model": {"source": "m"}, "evaluate": {"mcq": "x"}, "registry": {"target": "vertex"}}
        )


def test_labels_are_valid_vertex_labels() -> None:
    cfg = make_cfg({"project": "p", "location": "us-central1", "staging_bucket": "gs://bkt"})
    labels = model_labels(cfg, {"base_model": "Meta-Llama-3.1-8B-Instruct/v2"}, True)
    assert labels["base-model"] == "meta-llama-3-1-8b-instruct-v2"
    for k, v in labels.items():
        assert len(v) <= 63 and all(c.islower() or c.isdigit() or c in "-_" for c in v), (k, v)


def test_alias_vertex_cannot_hold_is_refused_before_any_request(vertex_env, tiny_model_dir) -> None:
    cfg = make_cfg(vertex_env.vertex_section(), aliases=["release_candidate"])
    with pytest.raises(ConfigError, match=r"release_candidate.*no '_'"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    assert vertex_env.vertex.requests == []
