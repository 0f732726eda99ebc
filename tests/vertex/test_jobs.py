"""Submit, schedule and upload a compiled pipeline against the fake Vertex AI server."""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import re
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from medprune.config import parse_config
from medprune.errors import ConfigError, VertexError
from medprune.vertex.jobs import (
    pipeline_parameters,
    schedule_pipeline,
    submit_pipeline,
    upload_template,
    validate_cron,
)
from medprune.vertex.template import describe, graph_settings

CMEK = "projects/medprune-test/locations/us-central1/keyRings/kr/cryptoKeys/runs"
NETWORK = "projects/123456/global/networks/medprune-vpc"


@dsl.container_component
def echo(config_json: str):
    return dsl.ContainerSpec(image="python:3.11-slim", command=["echo"], args=[config_json])


def make_cfg(vertex: dict):
    return parse_config(
        {
            "run_name": "nightly-prune",
            "model": {"source": "gs://models-bucket/llama", "name": "clinical-llama"},
            "evaluate": {"mcq": "gs://data-bucket/mcq.jsonl"},
            "registry": {"target": "vertex"},
            "vertex": vertex,
        }
    )


# A small pipeline that records the graph settings of the configs below, as medprune's does.
_DESCRIPTION = describe(
    "test", graph_settings(make_cfg({}), "europe-docker.pkg.dev/p/r/medprune-cpu:1")
)


@dsl.pipeline(name="medprune-test-pipeline", description=_DESCRIPTION)
def _pipeline(config_json: str, project: str = "", location: str = ""):
    echo(config_json=config_json)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "pipeline.yaml"
    compiler.Compiler().compile(_pipeline, str(path))
    return path


def test_submit_sends_everything_from_config(vertex_env, template) -> None:
    cfg = make_cfg(
        vertex_env.vertex_section(
            network=NETWORK,
            encryption_spec_key_name=CMEK,
            labels={"env": "dev"},
            enable_caching=True,
        )
    )
    name = submit_pipeline(cfg, template, enable_caching=False, job_id="nightly-prune-1")
    assert name == "projects/medprune-test/locations/us-central1/pipelineJobs/nightly-prune-1"
    (req,) = vertex_env.vertex.find("POST", r"pipelineJobs$")
    assert req.query["pipelineJobId"] == ["nightly-prune-1"]
    job = req.json
    assert job["serviceAccount"] == "pipeline@medprune-test.iam.gserviceaccount.com"
    assert job["network"] == NETWORK
    assert job["encryptionSpec"] == {"kmsKeyName": CMEK}
    assert job["labels"] == {"app": "medprune", "medprune-run": "nightly-prune", "env": "dev"}
    assert job["displayName"] == "nightly-prune"
    rc = job["runtimeConfig"]
    assert rc["gcsOutputDirectory"] == "gs://medprune-test-bucket/pipeline_root"
    params = rc["parameterValues"]
    sent = parse_config(__import__("json").loads(params["config_json"]))
    # the run's config is the submitted one with project, region and bucket resolved
    assert sent.model_copy(update={"vertex": cfg.vertex}) == cfg
    assert (sent.vertex.project, sent.vertex.location) == ("medprune-test", "us-central1")
    assert sent.vertex.staging_bucket == "gs://medprune-test-bucket"
    assert params["project"] == "medprune-test" and params["location"] == "us-central1"
    # caching off for this run, whatever the config said: every task spec says so
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())


def test_submit_caching_follows_config_when_not_given(vertex_env, template) -> None:
    cfg = make_cfg(vertex_env.vertex_section(enable_caching=True))
    submit_pipeline(cfg, template)
    job = vertex_env.vertex.find("POST", r"pipelineJobs$")[0].json
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"]["enableCache"] is True for t in tasks.values())


def test_compiled_template_holds_no_environment(vertex_env, template) -> None:
    text = template.read_text()
    assert "medprune-test" not in text.replace("medprune-test-pipeline", "")
    assert "us-central1" not in text


def test_submit_error_is_clear(vertex_env, template) -> None:
    vertex_env.vertex.fail_next(
        "POST", r"pipelineJobs$", status=403, message="permission denied on SA"
    )
    with pytest.raises(VertexError, match=r"nightly-prune.*permission denied on SA"):
        submit_pipeline(make_cfg(vertex_env.vertex_section()), template)


def test_schedule_sends_cron_and_limits(vertex_env, template) -> None:
    cfg = make_cfg(vertex_env.vertex_section(network=NETWORK))
    name = schedule_pipeline(
        cfg,
        template,
        "TZ=America/New_York  0 3 * * 1",
        max_concurrent_runs=2,
        start_time="2027-01-04T00:00:00Z",
        end_time="2027-06-30T00:00:00+00:00",
    )
    assert name.startswith("projects/medprune-test/locations/us-central1/schedules/")
    (req,) = vertex_env.vertex.find("POST", r"schedules$")
    s = req.json
    assert s["cron"] == "TZ=America/New_York 0 3 * * 1"
    assert s["maxConcurrentRunCount"] == "2"
    assert s["startTime"].startswith("2027-01-04T00:00:00") and s["endTime"].startswith(
        "2027-06-30"
    )
    assert s["displayName"] == "nightly-prune-schedule"
    job = s["createPipelineJobRequest"]["pipelineJob"]
    assert job["serviceAccount"] == "pipeline@medprune-test.iam.gserviceaccount.com"
    assert job["network"] == NETWORK
    assert "config_json" in job["runtimeConfig"]["parameterValues"]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * *", "expected 'TZ=Area/City"),
        ("TZ=Mars/Olympus 0 3 * * 1", "unknown time zone 'Mars/Olympus'"),
        ("0 3 * * 1; rm", "expected"),
    ],
)
def test_bad_cron_rejected_before_any_request(vertex_env, template, cron, message) -> None:
    with pytest.raises(ConfigError, match=message):
        schedule_pipeline(make_cfg(vertex_env.vertex_section()), template, cron)
    assert vertex_env.vertex.requests == []


def test_schedule_times_checked(vertex_env, template) -> None:
    cfg = make_cfg(vertex_env.vertex_section())
    with pytest.raises(ConfigError, match="must be after"):
        schedule_pipeline(
            cfg,
            template,
            "0 3 * * 1",
            start_time="2027-02-01T00:00:00Z",
            end_time="2027-01-01T00:00:00Z",
        )
    with pytest.raises(ConfigError, match="time zone"):
        schedule_pipeline(cfg, template, "0 3 * * 1", start_time="2027-02-01T00:00:00")
    assert validate_cron("CRON_TZ=Europe/London 30 2 1 * *") == "CRON_TZ=Europe/London 30 2 1 * *"


def test_upload_template_with_tags(fake_vertex, template) -> None:
    host = f"{fake_vertex.endpoint}/kfp/medprune-test/medprune-pipelines"
    package, version = upload_template(template, host, ["v0-1-0", "latest"])
    assert package == "medprune-test-pipeline"
    (t,) = fake_vertex.templates
    assert version == t["version"] and version.startswith("sha256:")
    assert t["tags"] == ["v0-1-0", "latest"]
    assert t["content"] == template.read_bytes()
    assert t["path"] == "/kfp/medprune-test/medprune-pipelines"


def test_upload_template_rejects_bad_host_and_file(fake_vertex, template, tmp_path) -> None:
    with pytest.raises(ConfigError, match=re.escape("kfp.pkg.dev")):
        upload_template(template, "https://example.com/repo", [])
    not_pipeline = tmp_path / "x.yaml"
    not_pipeline.write_text(yaml.safe_dump({"hello": 1}))
    with pytest.raises(ConfigError, match="not a compiled KFP pipeline"):
        upload_template(not_pipeline, f"{fake_vertex.endpoint}/kfp/p/r", [])
    assert fake_vertex.requests == []


def test_parameters_only_those_declared(template) -> None:
    cfg = make_cfg({"project": "p1", "location": "europe-west4", "staging_bucket": "gs://bkt"})
    values = pipeline_parameters(cfg, template)
    assert set(values) == {"config_json", "project", "location"}
    assert values["location"] == "europe-west4"
    with pytest.raises(ConfigError, match="'sparsity' is not an input"):
        pipeline_parameters(cfg, template, {"sparsity": 0.5})


def test_missing_project_names_env_var(monkeypatch, template) -> None:
    for var in (
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_REGION",
        "MEDPRUNE_BUCKET",
        "CLOUD_ML_PROJECT_ID",
        "CLOUD_ML_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    cfg = make_cfg({"location": "us-central1"})
    with pytest.raises(
        ConfigError, match=r"vertex.project \(or \$GOOGLE_CLOUD_PROJECT\).*MEDPRUNE_BUCKET"
    ):
        submit_pipeline(cfg, template)


def test_missing_pipeline_root_bucket_is_clear(vertex_env, template) -> None:
    cfg = make_cfg(vertex_env.vertex_section(pipeline_root="gs://no-such-root-bucket/runs"))
    with pytest.raises(ConfigError, match="gs://no-such-root-bucket does not exist"):
        submit_pipeline(cfg, template)
    assert not vertex_env.vertex.find("POST", r"pipelineJobs$")
    assert not vertex_env.gcs.client().bucket("no-such-root-bucket").exists()  # not created


def test_environment_from_run_placeholders() -> None:
    from medprune.vertex.client import environment_from_run

    env = environment_from_run(
        "projects/prj-1/locations/europe-west4/pipelineJobs/medprune-123",
        "gs://medprune-prod-bucket/pipeline_root/123",
    )
    assert env == {
        "GOOGLE_CLOUD_PROJECT": "prj-1",
        "GOOGLE_CLOUD_REGION": "europe-west4",
        "MEDPRUNE_BUCKET": "medprune-prod-bucket",
    }
    assert environment_from_run("medprune-2026-01-01", "/tmp/local/root") == {}
