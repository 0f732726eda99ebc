"""register_vertex against the Cloud Storage emulator and the fake Vertex AI server."""

from __future__ import annotations

import re
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
            promotion_alias="gate-passed",
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
    assert set(first["aliases"]) == {"candidate", "gate-passed", "default"}

    (upload,) = fake.find("POST", r"models:upload$")
    body = upload.json
    assert "parentModel" not in body  # no model of that name yet: a new model
    m = body["model"]
    assert m["displayName"] == "clinical-llama"
    assert m["artifactUri"] == first["artifact_uri"]
    assert m["artifactUri"].startswith("gs://medprune-test-bucket/models/clinical-llama/run-42-")
    assert sorted(m["versionAliases"]) == ["candidate", "gate-passed"]  # is_default_version off
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
    assert sorted(aliases["2"]) == ["candidate", "gate-passed"]
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
    cfg = make_cfg(vertex_env.vertex_section(promotion_alias="gate-passed"))
    with pytest.raises(RegistryError, match="gate did not pass"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=False)
    assert vertex_env.vertex.requests == []
    assert vertex_env.gcs.objects(vertex_env.bucket) == []


@pytest.mark.parametrize("failure", ["operation", "http"])
def test_upload_failing_midway_registers_nothing(vertex_env, tiny_model_dir, failure) -> None:
    fake = vertex_env.vertex
    parent = fake.add_model(
        "clinical-llama", "medprune-test", "us-central1", aliases=["gate-passed"]
    )
    parent_id = parent.rsplit("/", 1)[1]
    before = fake.aliases(parent_id)
    if failure == "operation":
        fake.fail_next_upload_operation("importing model artifacts failed: disk quota")
        expected = "disk quota"
    else:
        fake.fail_next("POST", r"models:upload$", status=503, message="backend unavailable")
        expected = "backend unavailable"
    cfg = make_cfg(vertex_env.vertex_section(promotion_alias="gate-passed"))
    with pytest.raises(RegistryError, match=f"no version was created.*{expected}"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    assert fake.aliases(parent_id) == before  # gate-passed still on version 1
    assert len(fake.models[parent_id].versions) == 1
    assert not fake.find("POST", r"mergeVersionAliases")
    # the uploaded files were cleaned up: nothing half registered in the bucket either
    assert vertex_env.gcs.objects(vertex_env.bucket) == []


def test_not_a_model_dir(vertex_env, tmp_path) -> None:
    cfg = make_cfg(vertex_env.vertex_section())
    with pytest.raises(RegistryError, match=re.escape("no config.json")):
        register_vertex(tmp_path, cfg=cfg, metadata={}, gate_passed=True)
    assert vertex_env.vertex.requests == []


def test_promote_version_moves_alias(vertex_env) -> None:
    fake = vertex_env.vertex
    name = fake.add_model("clinical-llama", "medprune-test", "us-central1", aliases=["approved"])
    model_id = name.rsplit("/", 1)[1]
    fake.models[model_id].versions.append(
        {**fake.models[model_id].versions[0], "versionId": "2", "versionAliases": ["candidate"]}
    )
    cfg = make_cfg(vertex_env.vertex_section())
    aliases = promote_version(cfg, name, "2", "approved")
    assert sorted(aliases) == ["approved", "candidate"]
    (merge,) = fake.find("POST", r"mergeVersionAliases$")
    assert merge.path.endswith(f"models/{model_id}@2:mergeVersionAliases")
    assert merge.json["versionAliases"] == ["approved"]
    assert fake.aliases(model_id)["1"] == ["default"]
    with pytest.raises(RegistryError, match="not found; no alias moved"):
        promote_version(cfg, name, "9", "approved")
    # the serving alias follows the endpoint (medprune promote), never a registry call
    with pytest.raises(ConfigError, match="'production' names the version serving"):
        promote_version(cfg, name, "2", "production")


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


def test_alias_vertex_cannot_hold_is_refused_in_the_config(vertex_env, tiny_model_dir) -> None:
    """Item 8 of issue 25. Vertex AI's alias rule is the Model proto's: "The format is
    [a-z][a-zA-Z0-9-]{0,126}[a-z0-9]" (google/cloud/aiplatform_v1/types/model.py,
    ``version_aliases``); the fake answers 400 to anything else, as Vertex does."""
    for bad in ("release_candidate", "a", "candidate-", "candidate_"):
        with pytest.raises(ConfigError, match=r"registry.aliases.*Vertex AI aliases"):
            make_cfg(vertex_env.vertex_section(), aliases=[bad])
    # the same alias is fine for the local registry, whose rule allows '_'
    ok = parse_config(
        {
            "model": {"source": "m"},
            "evaluate": {"mcq": "x"},
            "registry": {"aliases": ["release_candidate"]},
        }
    )
    assert ok.registry.aliases == ["release_candidate"]
    # a config built in code (model_copy skips validation) is still checked before any request
    cfg = make_cfg(vertex_env.vertex_section())
    registry = cfg.registry.model_copy(update={"aliases": ["release_candidate"]})
    cfg = cfg.model_copy(update={"registry": registry})
    with pytest.raises(ConfigError, match=r"release_candidate.*no '_'"):
        register_vertex(tiny_model_dir, cfg=cfg, metadata=METRICS, gate_passed=True)
    assert vertex_env.vertex.requests == []


def test_fake_vertex_rejects_an_alias_vertex_rejects(vertex_env, tiny_model_dir) -> None:
    """What the config check stands in for: the real SDK's upload of such an alias fails."""
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform

    from medprune.vertex.client import aiplatform_init

    aiplatform_init(make_cfg(vertex_env.vertex_section()).vertex)
    with pytest.raises(gexc.BadRequest, match="Invalid version alias 'release_candidate'"):
        aiplatform.Model.upload(
            display_name="clinical-llama",
            artifact_uri="gs://medprune-test-bucket/x",
            serving_container_image_uri="us-docker.pkg.dev/p/r/i:1",
            version_aliases=["release_candidate"],
            sync=True,
        )


@pytest.mark.parametrize("alias", ["production", "previous-production"])
def test_registration_never_puts_a_serving_alias(vertex_env, alias) -> None:
    """Item 2 of issue 25: `production` means the version holding the endpoint's stable
    traffic, set by deploy / promote / rollback; a registered version is not deployed yet."""
    with pytest.raises(ConfigError, match=rf"vertex.promotion_alias.*'{alias}' names the version"):
        make_cfg(vertex_env.vertex_section(promotion_alias=alias))
    with pytest.raises(ConfigError, match=rf"registry.aliases.*'{alias}' names the version"):
        make_cfg(vertex_env.vertex_section(), aliases=["candidate", alias])


def test_serving_container_is_pinned_sized_and_free_of_gguf(vertex_env, tmp_path) -> None:
    """Item 6 of issue 25. Google's Model Garden vLLM deployment samples
    (vertex-ai-samples, notebooks/community/model_garden/model_garden_pytorch_llama3_1_deployment
    .ipynb) pin the image by tag, pass --tensor-parallel-size=<accelerator count> and upload
    with serving_container_shared_memory_size_mb=16 * 1024 and
    serving_container_deployment_timeout=7200 (Model.upload in the SDK's models.py turns them
    into containerSpec.sharedMemorySizeMb / deploymentTimeout)."""
    import json as _json

    from medprune.config.vertex import DEFAULT_SERVING_IMAGE
    from medprune.export.bundle import with_serving_exports
    from medprune.load.model import save_model

    from tests.helpers.variants import build_variant

    model_dir = save_model(*build_variant("dense"), tmp_path / "m")
    cfg = parse_config(
        {
            "model": {"source": "/models/clinical-llama-3b", "name": "clinical-llama"},
            "evaluate": {"mcq": "mcq.jsonl"},
            "registry": {"target": "vertex", "export": ["gguf"]},
            "vertex": vertex_env.vertex_section(),
            "serve": {
                "endpoint": {"accelerator_type": "NVIDIA_L4", "accelerator_count": 2},
                "gguf": {"outtypes": ["q8_0"]},
            },
        }
    )
    with with_serving_exports(model_dir, ["gguf"], serve=cfg.serve, name="clinical") as staged:
        assert any(p.suffix == ".gguf" for p in staged.iterdir())  # what the stage hands over
        out = register_vertex(staged, cfg=cfg, metadata=METRICS, gate_passed=True)
    (upload,) = vertex_env.vertex.find("POST", r"models:upload$")
    spec = upload.json["model"]["containerSpec"]
    assert spec["imageUri"] == DEFAULT_SERVING_IMAGE and not spec["imageUri"].endswith(":latest")
    assert "--tensor-parallel-size=2" in spec["args"]
    assert f"--model={out['artifact_uri']}" in spec["args"]
    assert spec["sharedMemorySizeMb"] in (16384, "16384")  # int64: a JSON string on the wire
    assert spec["deploymentTimeout"] == "7200s"
    # the serving artifact holds the Hugging Face files only; GGUF files sit beside it
    bucket = "medprune-test-bucket"
    prefix = out["artifact_uri"].removeprefix(f"gs://{bucket}/")
    serving = vertex_env.gcs.objects(bucket, prefix + "/")
    assert serving and not any(o.endswith((".gguf", "/Modelfile", "/export.json")) for o in serving)
    exports = vertex_env.gcs.objects(bucket, prefix + "-gguf/")
    assert any(o.endswith(".gguf") for o in exports) and any(
        o.endswith("/Modelfile") for o in exports
    )
    assert out["exports_uri"] == out["artifact_uri"] + "-gguf"
    # the serving copy's completion marker lists exactly its files, so loaders accept it
    local = download_dir(out["artifact_uri"], tmp_path / "back")
    marker = _json.loads((local / "medprune_complete.json").read_text())
    assert not any(n.endswith(".gguf") for n in marker["files"])
    from medprune.io.atomic import check_complete

    check_complete(local)


def test_unpinned_serving_image_is_refused(vertex_env) -> None:
    for image in ("us-docker.pkg.dev/p/r/vllm:latest", "us-docker.pkg.dev/p/r/vllm"):
        with pytest.raises(ConfigError, match=re.escape("vertex.serving_container_image_uri")):
            make_cfg(vertex_env.vertex_section(serving_container_image_uri=image))
    pinned = "us-docker.pkg.dev/p/r/vllm@sha256:" + "a" * 64
    assert (
        make_cfg(
            vertex_env.vertex_section(serving_container_image_uri=pinned)
        ).vertex.serving_container_image_uri
        == pinned
    )
