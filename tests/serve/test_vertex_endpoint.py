"""Canary deploy, promote and rollback with the real aiplatform SDK (REST) against the
loopback fake Vertex AI server; request bodies asserted."""

from __future__ import annotations

import re

import pytest
from google.cloud.aiplatform_v1.types import AcceleratorType

from medprune.config import parse_config
from medprune.errors import ConfigError, DeployError
from medprune.serve.vertex_endpoint import deploy, promote, rollback

PROJECT, REGION = "medprune-test", "us-central1"
CMEK = f"projects/{PROJECT}/locations/{REGION}/keyRings/kr/cryptoKeys/serving"
SA = f"serving@{PROJECT}.iam.gserviceaccount.com"


def make_cfg(vertex_env, **endpoint):
    return parse_config(
        {
            "model": {"source": "/models/clinical", "name": "clinical-llama"},
            "evaluate": {"mcq": "mcq.jsonl"},
            "registry": {"target": "vertex"},
            "vertex": vertex_env.vertex_section(encryption_spec_key_name=CMEK),
            "serve": {
                "endpoint": {
                    "machine_type": "g2-standard-8",
                    "accelerator_type": "NVIDIA_L4",
                    "accelerator_count": 1,
                    "min_replica_count": 1,
                    "max_replica_count": 3,
                    "canary_traffic_percent": 10,
                    "service_account": SA,
                    **endpoint,
                }
            },
        }
    )


def seed_versions(fake, n=2):
    """A registered model with versions 1 (production) .. n (candidate on the last)."""
    name = fake.add_model("clinical-llama", PROJECT, REGION, aliases=["production"])
    model_id = name.rsplit("/", 1)[1]
    for v in range(2, n + 1):
        fake.models[model_id].versions.append(
            {
                **fake.models[model_id].versions[0],
                "versionId": str(v),
                "versionAliases": ["candidate"] if v == n else [],
            }
        )
    return name, model_id


def only_endpoint(fake):
    (ep_id,) = fake.endpoints
    return ep_id


def test_first_deploy_then_canary_then_promote_then_rollback(vertex_env) -> None:
    fake = vertex_env.vertex
    name, model_id = seed_versions(fake, 3)
    cfg = make_cfg(vertex_env)

    (first,) = deploy(cfg, "clinical-llama@production")
    ep_id = only_endpoint(fake)
    (create,) = fake.find("POST", r"/endpoints$")
    assert create.json["displayName"] == "clinical-llama-endpoint"
    assert create.json["encryptionSpec"] == {"kmsKeyName": CMEK}
    (dep1,) = fake.find("POST", r":deployModel$")
    dm = dep1.json["deployedModel"]
    assert dm["model"] == f"{name}@1"  # the exact version, not whatever is default later
    res = dm["dedicatedResources"]
    # the SDK sends enums as numbers ($alt=json;enum-encoding=int)
    assert res["machineSpec"] == {
        "machineType": "g2-standard-8",
        "acceleratorType": int(AcceleratorType.NVIDIA_L4),
        "acceleratorCount": 1,
    }
    assert (res["minReplicaCount"], res["maxReplicaCount"]) == (1, 3)
    assert dm["serviceAccount"] == SA
    assert dep1.json["trafficSplit"] == {"0": 100}
    prod_dm = first.deployed_model_id
    assert fake.traffic(ep_id) == {prod_dm: 100}

    (canary,) = deploy(cfg, "clinical-llama@candidate")
    dep2 = fake.find("POST", r":deployModel$")[1].json
    assert dep2["trafficSplit"] == {"0": 10, prod_dm: 90}
    assert fake.traffic(ep_id) == {prod_dm: 90, canary.deployed_model_id: 10}
    assert fake.deployed(ep_id)[canary.deployed_model_id] == f"{model_id}@3"

    (_promoted,) = promote(cfg, "clinical-llama@candidate")
    (patch,) = fake.find("PATCH", rf"/endpoints/{ep_id}$")
    assert patch.json["trafficSplit"] == {canary.deployed_model_id: 100}
    assert (
        "traffic_split" in patch.query.get("updateMask", [""])[0]
        or "trafficSplit" in patch.query.get("updateMask", [""])[0]
    )
    assert fake.traffic(ep_id) == {canary.deployed_model_id: 100}
    aliases = fake.aliases(model_id)
    assert "production" in aliases["3"] and "previous-production" in aliases["1"]
    assert set(fake.deployed(ep_id)) == {prod_dm, canary.deployed_model_id}  # old kept at 0%

    (back,) = rollback(cfg, "clinical-llama")
    assert fake.traffic(ep_id) == {prod_dm: 100}
    (undeploy,) = fake.find("POST", r":undeployModel$")
    assert undeploy.json["deployedModelId"] == canary.deployed_model_id
    assert set(fake.deployed(ep_id)) == {prod_dm}
    aliases = fake.aliases(model_id)
    assert "production" in aliases["1"] and "previous-production" not in aliases["1"]
    assert back.version_id == "1"


def test_rollback_of_a_canary_undeploys_it(vertex_env) -> None:
    fake = vertex_env.vertex
    seed_versions(fake, 2)
    cfg = make_cfg(vertex_env, canary_traffic_percent=25)
    (first,) = deploy(cfg, "clinical-llama@production")
    (canary,) = deploy(cfg, "clinical-llama@candidate")
    ep_id = only_endpoint(fake)
    assert fake.traffic(ep_id) == {first.deployed_model_id: 75, canary.deployed_model_id: 25}
    rollback(cfg, "clinical-llama")
    (undeploy,) = fake.find("POST", r":undeployModel$")
    assert undeploy.json == {
        "deployedModelId": canary.deployed_model_id,
        "trafficSplit": {first.deployed_model_id: 100},
    }
    assert fake.traffic(ep_id) == {first.deployed_model_id: 100}


def test_deploy_failing_midway_leaves_traffic_intact(vertex_env) -> None:
    fake = vertex_env.vertex
    seed_versions(fake, 2)
    cfg = make_cfg(vertex_env)
    (first,) = deploy(cfg, "clinical-llama@production")
    ep_id = only_endpoint(fake)
    fake.fail_next_operation("deployModel", "quota exceeded for NVIDIA_L4 in us-central1")
    with pytest.raises(DeployError, match=r"traffic is unchanged.*quota exceeded"):
        deploy(cfg, "clinical-llama@candidate")
    assert fake.traffic(ep_id) == {first.deployed_model_id: 100}
    assert set(fake.deployed(ep_id)) == {first.deployed_model_id}


def test_rollback_without_previous_version_is_refused(vertex_env) -> None:
    fake = vertex_env.vertex
    seed_versions(fake, 1)
    cfg = make_cfg(vertex_env)
    (first,) = deploy(cfg, "clinical-llama@production")
    with pytest.raises(DeployError, match="no previous version to roll back to"):
        rollback(cfg, "clinical-llama")
    assert fake.traffic(only_endpoint(fake)) == {first.deployed_model_id: 100}
    assert not fake.find("POST", r":undeployModel$")


def test_deploy_to_a_region_without_the_model(vertex_env) -> None:
    cfg = make_cfg(vertex_env)
    with pytest.raises(
        DeployError,
        match=r"'clinical-llama' is not registered in region us-central1.*serve.endpoint.regions",
    ):
        deploy(cfg, "clinical-llama@candidate")
    assert not vertex_env.vertex.find("POST", r"/endpoints$")
    seed_versions(vertex_env.vertex, 1)
    with pytest.raises(DeployError, match=r"no version or alias 'staging'"):
        deploy(cfg, "clinical-llama@staging")


EU = "europe-west4"
EU_CMEK = f"projects/{PROJECT}/locations/{EU}/keyRings/kr/cryptoKeys/serving"


def test_multi_region_copies_registers_and_deploys_in_each(vertex_env, tmp_path) -> None:
    from medprune.io.gcs import upload_dir

    fake, gcs = vertex_env.vertex, vertex_env.gcs
    gcs.create_bucket("medprune-eu-bucket")
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "model.safetensors").write_bytes(b"weights" * 100)
    upload_dir(src, "gs://medprune-test-bucket/models/clinical-llama/v1")
    fake.add_model(
        "clinical-llama",
        PROJECT,
        REGION,
        aliases=["candidate"],
        artifact_uri="gs://medprune-test-bucket/models/clinical-llama/v1",
    )
    regions = [
        {
            "location": REGION,
            "staging_bucket": "gs://medprune-test-bucket",
            "encryption_spec_key_name": CMEK,
        },
        {
            "location": EU,
            "staging_bucket": "gs://medprune-eu-bucket",
            "encryption_spec_key_name": EU_CMEK,
        },
    ]
    cfg = make_cfg(vertex_env, regions=regions)

    us, eu = deploy(cfg, "clinical-llama@candidate")
    assert (us.location, eu.location) == (REGION, EU)
    assert eu.copied_from == REGION and us.copied_from is None
    # the files were copied into the EU bucket, byte for byte
    eu_objects = gcs.objects("medprune-eu-bucket")
    assert sorted(o.rsplit("/", 1)[1] for o in eu_objects) == ["config.json", "model.safetensors"]
    # registered in the EU with the EU key, the alias and a label naming its source
    (eu_upload,) = [
        r for r in fake.find("POST", r"models:upload$") if f"/locations/{EU}/" in r.path
    ]
    m = eu_upload.json["model"]
    assert m["encryptionSpec"] == {"kmsKeyName": EU_CMEK}
    assert m["artifactUri"].startswith("gs://medprune-eu-bucket/models/clinical-llama/")
    assert m["versionAliases"] == ["candidate", "default"]  # a new model in that region
    assert m["labels"]["medprune-source"].startswith("us-central1-")
    # an endpoint in each region, each with its own CMEK, each serving its region's copy
    creates = fake.find("POST", r"/endpoints$")
    assert {c.path.split("/")[5]: c.json["encryptionSpec"]["kmsKeyName"] for c in creates} == {
        REGION: CMEK,
        EU: EU_CMEK,
    }
    deploys = fake.find("POST", r":deployModel$")
    assert [d.path.split("/")[5] for d in deploys] == [REGION, EU]
    assert f"/locations/{EU}/" in deploys[1].json["deployedModel"]["model"]
    assert us.traffic == {us.deployed_model_id: 100} and eu.traffic == {eu.deployed_model_id: 100}

    # a second deploy finds the copy instead of copying again
    before = len(fake.find("POST", r"models:upload$"))
    promote(cfg, "clinical-llama@candidate")
    assert len(fake.find("POST", r"models:upload$")) == before


def test_private_endpoint_through_private_service_connect(vertex_env) -> None:
    fake = vertex_env.vertex
    seed_versions(fake, 1)
    network = "projects/123456/global/networks/clinical-vpc"
    cfg = make_cfg(vertex_env, network=network)
    deploy(cfg, "clinical-llama@production")
    (create,) = fake.find("POST", r"/endpoints$")
    psc = create.json["privateServiceConnectConfig"]
    assert psc["enablePrivateServiceConnect"] is True
    assert psc["projectAllowlist"] == [PROJECT]
    assert psc["pscAutomationConfigs"] == [{"projectId": PROJECT, "network": network}]


def test_region_not_configured_is_refused(vertex_env) -> None:
    seed_versions(vertex_env.vertex, 1)
    with pytest.raises(DeployError, match=r"region 'asia-east1' is not configured"):
        deploy(make_cfg(vertex_env), "clinical-llama@production", region="asia-east1")


def test_cli_deploy_promote_rollback(vertex_env, tmp_path, capsys) -> None:
    import yaml

    from medprune.cli import main

    fake = vertex_env.vertex
    seed_versions(fake, 2)
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump(make_cfg(vertex_env).model_dump(mode="json", exclude_none=True)))
    assert main(["rollback", "clinical-llama", "--config", str(cfg)]) == 2
    assert "no endpoint 'clinical-llama-endpoint'" in capsys.readouterr().err
    assert (
        main(["deploy", "clinical-llama@production", "--target", "vertex", "--config", str(cfg)])
        == 0
    )
    assert main(["deploy", "clinical-llama@candidate", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "us-central1: canary 10%: " in out and "=90%" in out and "=10%" in out
    assert (
        main(["promote", "clinical-llama@candidate", "--config", str(cfg), "--undeploy-previous"])
        == 0
    )
    ep_id = only_endpoint(fake)
    assert list(fake.traffic(ep_id).values()) == [100] and len(fake.deployed(ep_id)) == 1
    # previous-production was undeployed at promotion: rollback deploys it again, then undeploys
    assert main(["rollback", "clinical-llama", "--config", str(cfg)]) == 0
    assert "rolled back to version 1" in capsys.readouterr().out
    assert list(fake.deployed(ep_id).values()) == [f"{only_model(fake)}@1"]
    assert list(fake.traffic(ep_id).values()) == [100]


def only_model(fake):
    (model_id,) = fake.models
    return model_id


# --- issue 25: defects found against the SDK's own source ------------------------------------


def model_id_of(name):
    return name.rsplit("/", 1)[1]


def test_private_service_connect_endpoint_is_found_again(vertex_env) -> None:
    """Item 1. ``aiplatform.Endpoint.list`` drops every endpoint with a network or a PSC
    config (google/cloud/aiplatform/models.py, Endpoint.list: ``cls_filter=lambda ep: not
    bool(ep.network) and not bool(ep.private_service_connect_config)``) and
    ``PrivateEndpoint.list`` keeps only those; the fake lists every endpoint, as the REST API
    does, so the SDK's own filter decides. The second deploy must be a canary on the same
    PSC endpoint, and promote / rollback must find it."""
    fake = vertex_env.vertex
    _, _model_id = seed_versions(fake, 2)
    network = "projects/123456/global/networks/clinical-vpc"
    cfg = make_cfg(vertex_env, network=network)
    (first,) = deploy(cfg, "clinical-llama@production")
    (canary,) = deploy(cfg, "clinical-llama@candidate")
    (create,) = fake.find("POST", r"/endpoints$")  # one endpoint, not a second one at 100%
    assert "privateServiceConnectConfig" in create.json
    ep_id = only_endpoint(fake)
    dep2 = fake.find("POST", r":deployModel$")[1]
    assert dep2.path.endswith(f"/endpoints/{ep_id}:deployModel")
    assert dep2.json["trafficSplit"] == {"0": 10, first.deployed_model_id: 90}
    promote(cfg, "clinical-llama@candidate")
    assert fake.traffic(ep_id) == {canary.deployed_model_id: 100}
    (back,) = rollback(cfg, "clinical-llama")
    assert fake.traffic(ep_id) == {first.deployed_model_id: 100} and back.version_id == "1"
    # a public endpoint of that name where the config asks for PSC is refused, naming the field
    public = make_cfg(vertex_env)
    with pytest.raises(
        DeployError, match=re.escape("Private Service Connect endpoint but serve.endpoint.network")
    ):
        rollback(public, "clinical-llama")


def seed_unaliased(fake, n=2, **extra):
    """A registered model whose versions carry registration aliases only: version 1
    'approved', the last 'candidate' (nothing is deployed yet, so nothing is production)."""
    name = fake.add_model("clinical-llama", PROJECT, REGION, aliases=["approved"], **extra)
    model_id = model_id_of(name)
    for v in range(2, n + 1):
        fake.models[model_id].versions.append(
            {
                **fake.models[model_id].versions[0],
                "versionId": str(v),
                "versionAliases": ["candidate"] if v == n else [],
            }
        )
    return name, model_id


def test_production_follows_the_endpoint_first_deploy_then_promote(vertex_env) -> None:
    """Item 2: `production` is the version holding the stable share (set by deploy when it
    is the first on the endpoint, and by promote); promote sets `previous-production` on the
    version that was serving."""
    fake = vertex_env.vertex
    _, model_id = seed_unaliased(fake, 2)
    cfg = make_cfg(vertex_env)
    deploy(cfg, "clinical-llama@approved")
    (merge,) = fake.find("POST", r"mergeVersionAliases$")
    assert merge.path.endswith(f"models/{model_id}@1:mergeVersionAliases")
    assert merge.json == {"versionAliases": ["production"]}
    assert "production" in fake.aliases(model_id)["1"]
    deploy(cfg, "clinical-llama@candidate")
    assert "production" in fake.aliases(model_id)["1"]  # a canary does not move it
    promote(cfg, "clinical-llama@candidate")
    aliases = fake.aliases(model_id)
    assert "production" in aliases["2"] and "previous-production" in aliases["1"]
    merges = [r.json["versionAliases"] for r in fake.find("POST", r"mergeVersionAliases$")]
    assert merges[-2:] == [["previous-production"], ["production"]]


def test_rollback_during_a_canary_keeps_the_serving_version(vertex_env) -> None:
    """Item 2: a version registered with `production` by an older config (before the config
    refused it) and deployed as a canary must not be taken for the serving one: rollback
    undeploys the canary and leaves the version really serving 90% at 100%, with
    `production` back on it."""
    fake = vertex_env.vertex
    name, model_id = seed_unaliased(fake, 2)
    cfg = make_cfg(vertex_env)
    (serving,) = deploy(cfg, "clinical-llama@approved")
    (canary,) = deploy(cfg, "clinical-llama@candidate")
    from google.cloud import aiplatform

    # what the old prod.yaml's registration did: `production` on the new, undeployed version
    aiplatform.models.ModelRegistry(name).add_version_aliases(["production"], version="2")
    ep_id = only_endpoint(fake)
    assert fake.traffic(ep_id) == {serving.deployed_model_id: 90, canary.deployed_model_id: 10}
    rollback(cfg, "clinical-llama")
    (undeploy,) = fake.find("POST", r":undeployModel$")
    assert undeploy.json == {
        "deployedModelId": canary.deployed_model_id,
        "trafficSplit": {serving.deployed_model_id: 100},
    }
    assert fake.traffic(ep_id) == {serving.deployed_model_id: 100}
    assert "production" in fake.aliases(model_id)["1"]


def test_rollback_of_a_canary_beside_a_never_promoted_first_version(vertex_env) -> None:
    """Item 9: the first version was deployed without ever being promoted and carries no
    `production` alias (an endpoint set up by hand or by an older medprune); rolling back
    the canary beside it still works, read from the endpoint."""
    fake = vertex_env.vertex
    _, model_id = seed_unaliased(fake, 2)
    cfg = make_cfg(vertex_env, canary_traffic_percent=50)  # equal shares: no hint in traffic
    (first,) = deploy(cfg, "clinical-llama@approved")
    for v in fake.models[model_id].versions:  # as if no alias had ever been set
        v["versionAliases"] = [a for a in v["versionAliases"] if a != "production"]
    (canary,) = deploy(cfg, "clinical-llama@candidate")
    ep_id = only_endpoint(fake)
    assert fake.traffic(ep_id) == {first.deployed_model_id: 50, canary.deployed_model_id: 50}
    (back,) = rollback(cfg, "clinical-llama")
    assert fake.traffic(ep_id) == {first.deployed_model_id: 100}
    assert set(fake.deployed(ep_id)) == {first.deployed_model_id}
    assert back.version_id == "1" and "production" in fake.aliases(model_id)["1"]


def test_rollback_compares_model_ids_not_project_spellings(vertex_env) -> None:
    """Item 5: Vertex names resources by project *number*; `vertex.parent_model` is written
    with the project id. The fake answers with the number (see its docstring), so comparing
    the strings finds nothing."""
    fake = vertex_env.vertex
    fake.project_numbers = {PROJECT: "123456789012"}
    name, _model_id = seed_unaliased(fake, 3)
    assert name.startswith(f"projects/{PROJECT}/")  # the id, as configured
    cfg = make_cfg(vertex_env)
    cfg.vertex.parent_model = name
    (first,) = deploy(cfg, "clinical-llama@approved")
    ep_id = only_endpoint(fake)
    dm = fake.endpoints[ep_id]["deployedModels"][0]
    assert dm["model"].startswith("projects/123456789012/")  # as Vertex returns it
    (_canary,) = deploy(cfg, "clinical-llama@candidate")
    rollback(cfg, "clinical-llama")  # the canary
    assert fake.traffic(ep_id) == {first.deployed_model_id: 100}
    (_again,) = deploy(cfg, "clinical-llama@candidate")
    promote(cfg, "clinical-llama@candidate")
    deploys = len(fake.find("POST", r":deployModel$"))
    (back,) = rollback(cfg, "clinical-llama")  # after the promotion
    # version 1 is found still deployed at 0% and takes the traffic back: no new deployment
    assert len(fake.find("POST", r":deployModel$")) == deploys
    assert fake.traffic(ep_id) == {first.deployed_model_id: 100} and back.version_id == "1"


def test_a_region_without_its_own_key_is_refused(vertex_env, monkeypatch) -> None:
    """Item 4: the primary key comes from $MEDPRUNE_KMS_KEY; a second region without a key
    of its own must not get it back when the config is re-resolved (Vertex AI needs the
    key in the resource's own region: "encryption_spec_key_name ... must be in the same
    region" in RegionConfig, and Vertex's CMEK docs)."""
    fake = vertex_env.vertex
    monkeypatch.setenv("MEDPRUNE_KMS_KEY", CMEK)
    seed_versions(fake, 1)
    us_region = {"location": REGION, "staging_bucket": "gs://medprune-test-bucket"}
    eu_region = {"location": EU, "staging_bucket": "gs://medprune-eu-bucket"}

    def cfg_for(regions):
        return parse_config(
            {
                "model": {"source": "/models/clinical", "name": "clinical-llama"},
                "evaluate": {"mcq": "mcq.jsonl"},
                "registry": {"target": "vertex"},
                "vertex": vertex_env.vertex_section(),
                "serve": {"endpoint": {"regions": regions}},
            }
        )

    before = len(fake.requests)
    for only in (None, EU, REGION):  # a bad region fails the config, whichever region is asked
        with pytest.raises(
            ConfigError, match=r"serve.endpoint.regions\[1\].encryption_spec_key_name"
        ):
            deploy(cfg_for([us_region, eu_region]), "clinical-llama@production", region=only)
    assert len(fake.requests) == before  # refused before any request
    # the primary region without a key of its own uses the primary key (same region)
    deploy(cfg_for([us_region]), "clinical-llama@production")
    (create,) = fake.find("POST", r"/endpoints$")
    assert create.json["encryptionSpec"] == {"kmsKeyName": CMEK}


def test_pipeline_network_from_the_environment_does_not_reach_endpoints(
    vertex_env, monkeypatch
) -> None:
    """Item 4: $MEDPRUNE_NETWORK is the pipeline's VPC-peering network. Re-resolving the
    config put it back into aiplatform.init, and ``PrivateEndpoint.create`` takes
    ``initializer.global_config.network`` when given none, then refuses a PSC config beside
    a network ("Argument `network` and `private_service_connect_config` enabled mutually
    exclusive", google/cloud/aiplatform/models.py)."""
    fake = vertex_env.vertex
    monkeypatch.setenv("MEDPRUNE_NETWORK", "projects/123456/global/networks/pipelines-vpc")
    seed_versions(fake, 1)
    psc_net = "projects/123456/global/networks/clinical-vpc"
    deploy(make_cfg(vertex_env, network=psc_net), "clinical-llama@production")
    (create,) = fake.find("POST", r"/endpoints$")
    assert "network" not in create.json
    assert create.json["privateServiceConnectConfig"]["pscAutomationConfigs"] == [
        {"projectId": PROJECT, "network": psc_net}
    ]
    # and a public endpoint stays public
    fake.endpoints.clear()
    deploy(make_cfg(vertex_env, display_name="public-ep"), "clinical-llama@production")
    public = fake.find("POST", r"/endpoints$")[-1].json
    assert "network" not in public and "privateServiceConnectConfig" not in public


def test_deploy_refuses_a_tensor_parallel_size_the_machines_lack(vertex_env) -> None:
    """Item 6: the version's vLLM args shard it over N GPUs (--tensor-parallel-size); serving
    it on replicas with another accelerator count is refused before any deployment."""
    fake = vertex_env.vertex
    _, model_id = seed_versions(fake, 1)
    fake.models[model_id].versions[0]["containerSpec"] = {
        "imageUri": "us-docker.pkg.dev/p/r/vllm:1",
        "args": ["--model=gs://b/m", "--tensor-parallel-size=2"],
    }
    with pytest.raises(
        DeployError, match=r"tensor-parallel-size=2.*serve.endpoint.accelerator_count"
    ):
        deploy(make_cfg(vertex_env), "clinical-llama@production")
    assert not fake.find("POST", r":deployModel$")
    deploy(make_cfg(vertex_env, accelerator_count=2), "clinical-llama@production")
    (dep,) = fake.find("POST", r":deployModel$")
    assert dep.json["deployedModel"]["dedicatedResources"]["machineSpec"]["acceleratorCount"] == 2
