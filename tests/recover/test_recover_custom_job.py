import json

import pytest
import yaml

from medprune.config import parse_config
from medprune.errors import ConfigError
from medprune.recover.custom_job import (
    build_job_spec,
    gcs_uri,
    launch_command,
    parse_pipeline_job,
    worker_pool_template,
)

JOB = {
    "enabled": True,
    "machine_type": "a3-highgpu-8g",
    "accelerator_type": "NVIDIA_H100_80GB",
    "accelerator_count": 8,
    "replica_count": 2,
}


def _cfg(tmp_path, job=JOB):
    return parse_config(
        {
            "model": {"source": str(tmp_path)},
            "evaluate": {"mcq": str(tmp_path / "m.jsonl")},
            "recover": {"data": "gs://b/r.jsonl", "custom_job": job},
        }
    )


def test_worker_pools_chief_and_workers(tmp_path):
    pools = worker_pool_template(_cfg(tmp_path).recover.custom_job, "us-docker.pkg.dev/p/r/medprune:1")
    assert [p["replica_count"] for p in pools] == [1, 1]
    assert pools[0]["machine_spec"] == {"machine_type": "a3-highgpu-8g", "accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8}
    assert pools[0]["container_spec"]["image_uri"] == "us-docker.pkg.dev/p/r/medprune:1"


def test_launch_command_spans_all_gpus(tmp_path):
    cfg = _cfg(tmp_path)
    pools, config_path, report_path = build_job_spec(
        cfg, worker_pool_template(cfg.recover.custom_job, "img"),
        model_dir="/gcs/b/root/prune/pruned_model", teacher_dir="/gcs/b/root/load/model", out_dir="/gcs/b/root/recover/recovered_model",
    )
    cmd = pools[1]["container_spec"]["command"]
    assert cmd[:2] == ["sh", "-c"]
    assert "accelerate launch --num_processes 16" in cmd[2] and "--multi_gpu" in cmd[2]
    assert "-m medprune.recover" in cmd[2] and "--teacher-dir /gcs/b/root/load/model" in cmd[2]
    assert config_path == "/gcs/b/root/recover/recovered_model.recover_config.json"
    assert report_path.endswith(".recover_report.json")
    fsdp = launch_command(cfg.recover.custom_job.model_copy(update={"fsdp": True}), ["--x"])
    assert "--use_fsdp --fsdp_version 2" in fsdp[2]
    cpu = launch_command(cfg.recover.custom_job.model_copy(update={"accelerator_type": None}), ["--x"])
    assert cpu == ["python", "-m", "medprune.recover", "--x"]


def test_vertex_detection_and_paths():
    assert parse_pipeline_job("projects/p1/locations/europe-west4/pipelineJobs/medprune-123") == ("p1", "europe-west4", "medprune-123")
    assert parse_pipeline_job("{{$.pipeline_job_resource_name}}") is None  # kfp.local leaves it
    assert gcs_uri("/gcs/b/x/y") == "gs://b/x/y" and gcs_uri("/tmp/x") == "/tmp/x"


def test_custom_job_validators_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="recover.custom_job.machine_type"):
        _cfg(tmp_path, {**JOB, "machine_type": "A3 HIGH"})
    with pytest.raises(ConfigError, match="recover.custom_job.replica_count"):
        _cfg(tmp_path, {**JOB, "replica_count": 0})
    with pytest.raises(ConfigError, match=r"recover.custom_job.*accelerator_count must be >= 1"):
        _cfg(tmp_path, {**JOB, "accelerator_count": 0})


def _compile(cfg, path):
    from kfp import compiler

    from medprune.pipelines.medprune_pipeline import build_pipeline

    compiler.Compiler().compile(build_pipeline(cfg), package_path=str(path))
    return yaml.safe_load(path.read_text())


def _recover_tasks(spec):
    return {n: t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("recover")}


def test_compiled_pipeline_shows_worker_pools(tmp_path):
    spec = _compile(_cfg(tmp_path), tmp_path / "p.yaml")
    (_name, task), = _recover_tasks(spec).items()
    params = task["inputs"]["parameters"]
    pools = json.loads(params["worker_pools_json"]["runtimeValue"]["constant"])
    assert pools[0]["machine_spec"]["machine_type"] == "a3-highgpu-8g"
    assert pools[0]["machine_spec"]["accelerator_type"] == "NVIDIA_H100_80GB"
    assert pools[0]["machine_spec"]["accelerator_count"] == 8
    assert sum(p["replica_count"] for p in pools) == 2
    assert params["pipeline_job_resource_name"]["runtimeValue"]["constant"] == "{{$.pipeline_job_resource_name}}"
    arts = task["inputs"]["artifacts"]
    assert arts["teacher_model"]["taskOutputArtifact"]["producerTask"] == "load-component"
    # the launcher task itself asks for no accelerator
    executor = spec["deploymentSpec"]["executors"][task["componentRef"]["name"].replace("comp-", "exec-")]
    assert "accelerator" not in executor["container"].get("resources", {})


def test_compiled_pipeline_without_custom_job_passes_teacher(tmp_path):
    cfg = _cfg(tmp_path, {"enabled": False})
    spec = _compile(cfg, tmp_path / "p.yaml")
    (_name, task), = _recover_tasks(spec).items()
    assert "worker_pools_json" not in task["inputs"].get("parameters", {})
    assert task["inputs"]["artifacts"]["teacher_model"]["taskOutputArtifact"] == {"outputArtifactKey": "model", "producerTask": "load-component"}
