"""`medprune submit / schedule / upload-template` against the loopback fakes, with the
real compiled medprune pipeline."""

import json

import pytest
import yaml

from medprune.cli import main

from tests.helpers.fixture_data import write_run_config


@pytest.fixture
def vertex_cfg(tmp_path, tiny_model_dir, vertex_env):
    path = write_run_config(tmp_path, tiny_model_dir)
    data = yaml.safe_load(path.read_text())
    data["registry"] = {"target": "vertex"}
    data["vertex"] = vertex_env.vertex_section(
        labels={"env": "test"},
        template_repository=f"{vertex_env.vertex.endpoint}/kfp/medprune-test/pipelines",
    )
    # terraform output image_repository: the default image is REPO/medprune-gpu:VERSION
    data["pipeline"] = {
        "image_repository": "us-central1-docker.pkg.dev/medprune-test/medprune-test"
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_submit_compiles_against_image_and_submits(vertex_cfg, vertex_env, capsys):
    code = main(
        [
            "submit",
            str(vertex_cfg),
            "--image",
            "europe-docker.pkg.dev/p/r/medprune-cpu:v9",
            "--no-caching",
            "--job-id",
            "cli-run-1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "pipelineJobs/cli-run-1" in capsys.readouterr().out
    (req,) = vertex_env.vertex.find("POST", r"pipelineJobs$")
    job = req.json
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "europe-docker.pkg.dev/p/r/medprune-cpu:v9"
    }
    assert all(
        t["cachingOptions"].get("enableCache", False) is False
        for t in job["pipelineSpec"]["root"]["dag"]["tasks"].values()
    )
    sent = json.loads(job["runtimeConfig"]["parameterValues"]["config_json"])
    assert sent["vertex"]["project"] == "medprune-test"
    assert job["labels"]["env"] == "test"


def test_schedule_and_upload_template(vertex_cfg, vertex_env, tmp_path, capsys):
    template = tmp_path / "pipeline.yaml"
    assert main(["compile", str(vertex_cfg), "-o", str(template)]) == 0
    assert (
        main(
            [
                "schedule",
                str(vertex_cfg),
                "--template",
                str(template),
                "--cron",
                "TZ=Europe/London 0 3 * * 1",
                "--max-concurrent-runs",
                "1",
                "--start-time",
                "2027-01-04T00:00:00Z",
            ]
        )
        == 0
    )
    (req,) = vertex_env.vertex.find("POST", r"schedules$")
    assert req.json["cron"] == "TZ=Europe/London 0 3 * * 1"
    assert (
        main(
            [
                "upload-template",
                str(template),
                "--config",
                str(vertex_cfg),
                "--tag",
                "v1",
                "--tag",
                "latest",
            ]
        )
        == 0
    )
    (t,) = vertex_env.vertex.templates
    assert t["tags"] == ["v1", "latest"] and t["content"] == template.read_bytes()
    assert "uploaded: " in capsys.readouterr().out


def test_bad_cron_exits_2_with_message(vertex_cfg, vertex_env, tmp_path, capsys):
    template = tmp_path / "pipeline.yaml"
    assert main(["compile", str(vertex_cfg), "-o", str(template)]) == 0
    assert (
        main(["schedule", str(vertex_cfg), "--template", str(template), "--cron", "every monday"])
        == 2
    )
    assert "expected 'TZ=Area/City" in capsys.readouterr().err
    assert vertex_env.vertex.requests == []


def test_schedule_and_submit_refuse_a_config_the_template_was_not_compiled_from(
    vertex_cfg, vertex_env, tmp_path, capsys
):
    template = tmp_path / "pipeline.yaml"
    assert main(["compile", str(vertex_cfg), "-o", str(template)]) == 0
    capsys.readouterr()
    # the template has the vertex register task; a config asking for the local registry and
    # a custom job would run the template's graph, not its own
    assert (
        main(
            [
                "schedule",
                str(vertex_cfg),
                "--template",
                str(template),
                "--cron",
                "TZ=Etc/UTC 0 3 * * 1",
                "--set",
                "registry.target=local",
                "--set",
                "recover.custom_job.enabled=true",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "registry.target: template 'vertex', config 'local'" in err
    assert "recover.custom_job.enabled: template False, config True" in err
    assert (
        main(
            [
                "submit",
                str(vertex_cfg),
                "--template",
                str(template),
                "--set",
                "pipeline.resources.prune.memory=200G",
                "--set",
                "pipeline.image_tag=v2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "pipeline.resources.prune.memory: template '64G', config '200G'" in err
    assert (
        "pipeline.image: template 'us-central1-docker.pkg.dev/medprune-test/medprune-test/medprune-gpu:"
        in err
    )
    assert "medprune-gpu:v2'" in err
    assert vertex_env.vertex.requests == []  # nothing was sent
    # settings that do not shape the graph may differ: that is what config_json is for
    assert (
        main(
            [
                "submit",
                str(vertex_cfg),
                "--template",
                str(template),
                "--set",
                "prune.sparsity=0.3",
                "--job-id",
                "other-sparsity",
            ]
        )
        == 0
    )
    (req,) = vertex_env.vertex.find("POST", r"pipelineJobs$")
    assert (
        json.loads(req.json["runtimeConfig"]["parameterValues"]["config_json"])["prune"]["sparsity"]
        == 0.3
    )


def test_template_without_a_graph_record_is_refused(vertex_cfg, vertex_env, tmp_path, capsys):
    template = tmp_path / "pipeline.yaml"
    assert main(["compile", str(vertex_cfg), "-o", str(template)]) == 0
    spec = yaml.safe_load(template.read_text())
    spec["pipelineInfo"].pop("description", None)
    template.write_text(yaml.safe_dump(spec))
    assert main(["submit", str(vertex_cfg), "--template", str(template)]) == 2
    assert "records no medprune graph settings" in capsys.readouterr().err


def test_schedule_replace_and_unschedule_leave_no_orphans(vertex_cfg, vertex_env, tmp_path, capsys):
    template = tmp_path / "pipeline.yaml"
    assert main(["compile", str(vertex_cfg), "-o", str(template)]) == 0
    cron = ["--cron", "TZ=Etc/UTC 0 3 * * 1"]
    assert main(["schedule", str(vertex_cfg), "--template", str(template), *cron]) == 0
    # terraform re-applies (cron or template changed): the old schedule is replaced, not kept
    assert (
        main(
            [
                "schedule",
                str(vertex_cfg),
                "--template",
                str(template),
                "--cron",
                "TZ=Etc/UTC 0 4 * * 1",
                "--replace",
            ]
        )
        == 0
    )
    (only,) = vertex_env.vertex.schedules.values()
    assert only["cron"] == "TZ=Etc/UTC 0 4 * * 1" and only["displayName"] == "test-run-schedule"
    assert len(vertex_env.vertex.find("DELETE", r"schedules/\d+$")) == 1
    # terraform destroy
    assert main(["unschedule", str(vertex_cfg)]) == 0
    assert vertex_env.vertex.schedules == {}
    assert "deleted 1 schedule(s)" in capsys.readouterr().out


def test_config_takes_project_values_from_terraform_outputs(
    vertex_cfg, vertex_env, tmp_path, monkeypatch, capsys
):
    """examples/*.yaml name no project: ${VAR} in values, and the vertex fields terraform
    outputs (medprune_env) come from the environment."""
    data = yaml.safe_load(vertex_cfg.read_text())
    data["vertex"].pop("service_account", None)
    data["evaluate"]["mcq"] = "${DATA_DIR}/" + data["evaluate"]["mcq"].rsplit("/", 1)[1]
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(
        "MEDPRUNE_SERVICE_ACCOUNT", "medprune-prod-pipeline@medprune-test.iam.gserviceaccount.com"
    )
    monkeypatch.setenv(
        "MEDPRUNE_KMS_KEY", "projects/medprune-test/locations/us-central1/keyRings/r/cryptoKeys/k"
    )
    vertex_cfg.write_text(yaml.safe_dump(data))
    assert main(["submit", str(vertex_cfg), "--job-id", "from-env"]) == 0, capsys.readouterr().err
    (req,) = vertex_env.vertex.find("POST", r"pipelineJobs$")
    assert (
        req.json["serviceAccount"] == "medprune-prod-pipeline@medprune-test.iam.gserviceaccount.com"
    )
    assert req.json["encryptionSpec"]["kmsKeyName"].endswith("cryptoKeys/k")
    sent = json.loads(req.json["runtimeConfig"]["parameterValues"]["config_json"])
    assert sent["evaluate"]["mcq"] == str(tmp_path / "data" / "mcq.jsonl")
    monkeypatch.delenv("DATA_DIR")
    assert main(["validate", str(vertex_cfg)]) == 2
    assert "evaluate.mcq: ${DATA_DIR} is not set in the environment" in capsys.readouterr().err
