import json
import re

import pytest
import yaml

from medprune.config import parse_config
from medprune.errors import ConfigError
from medprune.io.fuse import gcs_uri
from medprune.recover.custom_job import (
    build_job_spec,
    job_location,
    launch_command,
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
            "pipeline": {"base_image": "us-docker.pkg.dev/p/r/medprune-gpu:1"},
        }
    )


def test_worker_pools_chief_and_workers(tmp_path):
    pools = worker_pool_template(
        _cfg(tmp_path).recover.custom_job, "us-docker.pkg.dev/p/r/medprune:1"
    )
    assert [p["replica_count"] for p in pools] == [1, 1]
    assert pools[0]["machine_spec"] == {
        "machine_type": "a3-highgpu-8g",
        "accelerator_type": "NVIDIA_H100_80GB",
        "accelerator_count": 8,
    }
    assert pools[0]["container_spec"]["image_uri"] == "us-docker.pkg.dev/p/r/medprune:1"


def test_launch_command_spans_all_gpus(tmp_path):
    cfg = _cfg(tmp_path)
    pools, config_path, report_path = build_job_spec(
        cfg,
        worker_pool_template(cfg.recover.custom_job, "img"),
        model_dir="/gcs/b/root/prune/pruned_model",
        teacher_dir="/gcs/b/root/load/model",
        out_dir="/gcs/b/root/recover/recovered_model",
    )
    cmd = pools[1]["container_spec"]["command"]
    assert cmd[:6] == [
        "python",
        "-m",
        "medprune.recover.launch",
        "--processes-per-node",
        "8",
        "--multi-gpu",
    ]
    assert cmd[6] == "--" and cmd[-2:] == ["--teacher-dir", "/gcs/b/root/load/model"]
    assert config_path == "/gcs/b/root/recover/recovered_model.recover_config.json"
    assert report_path.endswith(".recover_report.json")
    fsdp = launch_command(cfg.recover.custom_job.model_copy(update={"fsdp": True}), ["--x"])
    assert "--fsdp" in fsdp and "--multi-gpu" not in fsdp
    cpu = launch_command(
        cfg.recover.custom_job.model_copy(update={"accelerator_type": None}), ["--x"]
    )
    assert cpu == ["python", "-m", "medprune.recover", "--x"]


# What Vertex AI sets in a custom container of a 3-node job (docs: "distributed training",
# CLUSTER_SPEC): the pools' replicas and this replica's pool and index.
CLUSTER_SPEC = {
    "cluster": {
        "workerpool0": ["cmle-training-workerpool0-ab12-0:2222"],
        "workerpool1": [
            "cmle-training-workerpool1-ab12-0:2222",
            "cmle-training-workerpool1-ab12-1:2222",
        ],
    },
    "environment": "cloud",
    "task": {"type": "workerpool1", "index": 1},
    "job": "{}",
}


def test_cluster_env_from_vertex_cluster_spec():
    from medprune.recover.launch import accelerate_command, cluster_env

    env = {"CLUSTER_SPEC": json.dumps(CLUSTER_SPEC)}
    assert cluster_env(env) == {
        "MASTER_ADDR": "cmle-training-workerpool0-ab12-0",
        "MASTER_PORT": "2222",
        "WORLD_SIZE": "3",
        "RANK": "2",
    }
    chief = {
        "CLUSTER_SPEC": json.dumps({**CLUSTER_SPEC, "task": {"type": "workerpool0", "index": 0}})
    }
    assert cluster_env(chief)["RANK"] == "0"
    # Vertex's prebuilt PyTorch containers set the torch variables: they win when all are set
    torch_env = {
        "MASTER_ADDR": "10.0.0.2",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": "2",
        "RANK": "1",
        **env,
    }
    assert cluster_env(torch_env) == {
        "MASTER_ADDR": "10.0.0.2",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": "2",
        "RANK": "1",
    }
    assert cluster_env({}) == {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
        "WORLD_SIZE": "1",
        "RANK": "0",
    }
    cmd = accelerate_command(8, fsdp=False, multi_gpu=True, module_args=["--x"], environ=env)
    assert cmd == [
        "accelerate",
        "launch",
        "--num_processes",
        "24",
        "--num_machines",
        "3",
        "--machine_rank",
        "2",
        "--main_process_ip",
        "cmle-training-workerpool0-ab12-0",
        "--main_process_port",
        "2222",
        "--multi_gpu",
        "-m",
        "medprune.recover",
        "--x",
    ]


def test_unreadable_cluster_spec_is_an_error():
    from medprune.errors import RecoveryError
    from medprune.recover.launch import cluster_env

    with pytest.raises(RecoveryError, match="CLUSTER_SPEC from Vertex AI is not readable"):
        cluster_env({"CLUSTER_SPEC": '{"cluster": {}}'})
    with pytest.raises(RecoveryError, match="workerpool2"):
        cluster_env(
            {
                "CLUSTER_SPEC": json.dumps(
                    {**CLUSTER_SPEC, "task": {"type": "workerpool2", "index": 0}}
                )
            }
        )


def test_job_location_and_paths(tmp_path):
    from medprune.errors import RecoveryError

    cfg = _cfg(tmp_path)  # no vertex section: what Vertex AI sets in its jobs is used
    env = {"CLOUD_ML_PROJECT_ID": "p1", "CLOUD_ML_REGION": "europe-west4"}
    assert job_location(cfg, env) == ("p1", "europe-west4")
    with pytest.raises(RecoveryError, match=r"vertex.project and vertex.location unknown"):
        job_location(cfg, {})
    assert gcs_uri("/gcs/b/x/y") == "gs://b/x/y" and gcs_uri("/tmp/x") == "/tmp/x"


def test_custom_job_validators_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("recover.custom_job.machine_type")):
        _cfg(tmp_path, {**JOB, "machine_type": "A3 HIGH"})
    with pytest.raises(ConfigError, match=re.escape("recover.custom_job.replica_count")):
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
    ((_name, task),) = _recover_tasks(spec).items()
    params = task["inputs"]["parameters"]
    pools = json.loads(params["worker_pools_json"]["runtimeValue"]["constant"])
    assert pools[0]["machine_spec"]["machine_type"] == "a3-highgpu-8g"
    assert pools[0]["machine_spec"]["accelerator_type"] == "NVIDIA_H100_80GB"
    assert pools[0]["machine_spec"]["accelerator_count"] == 8
    assert sum(p["replica_count"] for p in pools) == 2
    assert params["run_on"]["runtimeValue"]["constant"] == "vertex"
    arts = task["inputs"]["artifacts"]
    assert arts["teacher_model"]["taskOutputArtifact"]["producerTask"] == "load-component"
    # the launcher task itself asks for no accelerator
    executor = spec["deploymentSpec"]["executors"][
        task["componentRef"]["name"].replace("comp-", "exec-")
    ]
    assert "accelerator" not in executor["container"].get("resources", {})


def test_cached_tasks_take_no_run_specific_input(tmp_path):
    """Issue 25, item 7: Vertex AI Pipelines reuses a task's result when its cache key (the
    component and its inputs) matches an earlier run ("Configure execution caching" in the
    Vertex AI Pipelines docs). kfp's run placeholders ({{$.pipeline_job_resource_name}},
    {{$.pipeline_job_name}}, ...) differ in every run, so a cached task that takes one never
    caches: only the never-cached register / not-promoted tasks may."""
    cfg = _cfg(tmp_path)
    spec = _compile(cfg, tmp_path / "p.yaml")

    def tasks(dag):
        for name, task in dag["tasks"].items():
            yield name, task
            comp = spec["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                yield from tasks(comp["dag"])

    cached = {}
    for name, task in tasks(spec["root"]["dag"]):
        if task.get("cachingOptions", {}).get("enableCache") is True:
            cached[name] = task
    assert any(n.startswith("recover") for n in cached)  # the custom-job launcher caches
    for name, task in cached.items():
        for param, value in task.get("inputs", {}).get("parameters", {}).items():
            constant = json.dumps(value.get("runtimeValue", {}).get("constant", ""))
            assert "{{$.pipeline_job" not in constant, (name, param, constant)


def test_launcher_submits_where_the_config_says(tmp_path, vertex_env):
    """The launcher's project and region come from the run's config (resolved by `medprune
    submit`), its display name from run_name: nothing run-specific is an input."""
    from medprune.recover.custom_job import REPORT_SUFFIX, run_recover_step

    cfg = _vertex_cfg(tmp_path, vertex_env)
    out_dir = tmp_path / "recover" / "recovered_model"
    out_dir.parent.mkdir(parents=True)
    # what the job's workers write when they finish (the fake job succeeds at once)
    (tmp_path / "recover" / f"recovered_model{REPORT_SUFFIX}").write_text('{"steps": 3}')
    report = run_recover_step(
        cfg.to_json(),
        json.dumps(worker_pool_template(cfg.recover.custom_job, "us-docker.pkg.dev/p/r/m:1")),
        "vertex",
        model_dir="/gcs/b/m",
        teacher_dir=None,
        out_dir=str(out_dir),
        progress=lambda m: None,
    )
    assert report == {"steps": 3}
    (req,) = vertex_env.vertex.find("POST", r"customJobs$")
    assert req.path.startswith("/v1/projects/medprune-test/locations/us-central1/")
    assert req.json["displayName"] == "medprune-recover"


def test_compiled_pipeline_without_custom_job_passes_teacher(tmp_path):
    cfg = _cfg(tmp_path, {"enabled": False})
    spec = _compile(cfg, tmp_path / "p.yaml")
    ((_name, task),) = _recover_tasks(spec).items()
    assert "worker_pools_json" not in task["inputs"].get("parameters", {})
    assert task["inputs"]["artifacts"]["teacher_model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model",
        "producerTask": "load-component",
    }


CMEK = "projects/medprune-test/locations/us-central1/keyRings/kr/cryptoKeys/k"
NETWORK = "projects/123/global/networks/vpc"


def _vertex_cfg(tmp_path, vertex_env):
    return parse_config(
        {
            "model": {"source": str(tmp_path)},
            "evaluate": {"mcq": str(tmp_path / "m.jsonl")},
            "recover": {"data": "/gcs/b/r.jsonl", "custom_job": JOB},
            "vertex": vertex_env.vertex_section(network=NETWORK, encryption_spec_key_name=CMEK),
        }
    )


def test_custom_job_runs_with_the_pipelines_account_network_and_key(tmp_path, vertex_env):
    from medprune.recover.custom_job import submit_and_wait

    cfg = _vertex_cfg(tmp_path, vertex_env)
    pools, _, _ = build_job_spec(
        cfg,
        worker_pool_template(cfg.recover.custom_job, "us-docker.pkg.dev/p/r/medprune-gpu:1"),
        model_dir="/gcs/b/m",
        teacher_dir=None,
        out_dir="/gcs/b/out",
    )
    name = submit_and_wait(
        cfg,
        pools,
        project="medprune-test",
        location="us-central1",
        display_name="run-1-recover",
        base_output_dir="gs://b/root",
        progress=lambda m: None,
    )
    (req,) = vertex_env.vertex.find("POST", r"customJobs$")
    body = req.json
    assert body["encryptionSpec"] == {"kmsKeyName": CMEK}
    assert body["jobSpec"]["network"] == NETWORK
    assert (
        body["jobSpec"]["serviceAccount"] == cfg.vertex.service_account
    )  # the pipeline's own account
    assert (
        body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"]
        == "us-docker.pkg.dev/p/r/medprune-gpu:1"
    )
    assert name == vertex_env.vertex.custom_jobs[name]["name"]
    assert not vertex_env.vertex.find("POST", r":cancel$")


def test_cancelling_the_pipeline_task_cancels_the_custom_job(tmp_path, vertex_env):
    import os
    import signal
    import threading

    from medprune.errors import RecoveryError
    from medprune.recover.custom_job import submit_and_wait

    vertex_env.vertex.custom_job_final_state = None  # the job keeps running
    cfg = _vertex_cfg(tmp_path, vertex_env)
    pools, _, _ = build_job_spec(
        cfg,
        worker_pool_template(cfg.recover.custom_job, "img"),
        model_dir="/gcs/b/m",
        teacher_dir=None,
        out_dir="/gcs/b/out",
    )

    def stop_when_running():  # Vertex AI stops a cancelled task's container with SIGTERM
        for _ in range(200):
            if vertex_env.vertex.find("GET", r"customJobs/\d+$"):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(0.05)

    threading.Thread(target=stop_when_running, daemon=True).start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RecoveryError, match="cancelled \\(signal SIGTERM\\)"):
        submit_and_wait(
            cfg,
            pools,
            project="medprune-test",
            location="us-central1",
            display_name="run-2-recover",
            base_output_dir="gs://b/root",
            progress=lambda m: None,
        )
    (cancel,) = vertex_env.vertex.find("POST", r"customJobs/\d+:cancel$")
    (job,) = vertex_env.vertex.custom_jobs.values()
    assert cancel.path.endswith(job["name"] + ":cancel") and job["state"] == "JOB_STATE_CANCELLED"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is removed again
