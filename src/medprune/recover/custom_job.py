"""Run the recover step as its own Vertex AI custom job, with its own worker pools.

A 70B model's recovery needs a multi-GPU node (or several) while the other stages stay
small. When ``recover.custom_job.enabled`` the pipeline's recover task becomes a small
launcher: it submits an ``aiplatform.CustomJob`` whose workers run
``accelerate launch -m medprune.recover ...`` in the pipeline's image, waits for it, and
reads the report the job wrote beside the model. Outside Vertex (the local runner) the same
task runs the stage in process.

The worker pools come from config at compile time, so the compiled pipeline shows them::

    pools = worker_pool_template(cfg.recover.custom_job, image)
    # [{"machine_spec": {"machine_type": "a3-highgpu-8g", "accelerator_type": ...}, ...}]
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from medprune.config import CustomJobConfig, RunConfig
from medprune.errors import RecoveryError

_RESOURCE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/pipelineJobs/([^/]+)$")
REPORT_SUFFIX = ".recover_report.json"
CONFIG_SUFFIX = ".recover_config.json"


def worker_pool_template(job: CustomJobConfig, image: str) -> list[dict[str, Any]]:
    """Vertex worker pool specs without the command (paths are known only at run time):
    pool 0 is the chief (one replica), pool 1 holds the other ``replica_count - 1`` nodes."""
    machine: dict[str, Any] = {"machine_type": job.machine_type}
    if job.accelerator_type:
        machine["accelerator_type"] = job.accelerator_type
        machine["accelerator_count"] = job.accelerator_count
    pool = {
        "machine_spec": machine,
        "replica_count": 1,
        "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": job.boot_disk_size_gb},
        "container_spec": {"image_uri": image},
    }
    pools = [pool]
    if job.replica_count > 1:
        pools.append({**pool, "replica_count": job.replica_count - 1})
    return pools


def launch_command(job: CustomJobConfig, module_args: list[str]) -> list[str]:
    """The container command of every worker. ``accelerate launch`` starts one process per
    accelerator; across nodes it reads the rendezvous Vertex sets (MASTER_ADDR, MASTER_PORT,
    WORLD_SIZE = nodes, RANK = node rank)."""
    if job.launcher == "python" or not job.accelerator_type:
        return ["python", "-m", "medprune.recover", *module_args]
    per_node = max(job.accelerator_count, 1)
    total = per_node * job.replica_count
    launch = [
        "accelerate", "launch",
        "--num_processes", str(total),
        "--num_machines", '"${WORLD_SIZE:-1}"',
        "--machine_rank", '"${RANK:-0}"',
        "--main_process_ip", '"${MASTER_ADDR:-127.0.0.1}"',
        "--main_process_port", '"${MASTER_PORT:-29500}"',
    ]
    launch += ["--use_fsdp", "--fsdp_version", "2"] if job.fsdp else (["--multi_gpu"] if total > 1 else [])
    launch += ["-m", "medprune.recover", *(shlex.quote(a) for a in module_args)]
    return ["sh", "-c", " ".join(launch)]


def gcs_uri(path: str) -> str:
    """/gcs/B/P -> gs://B/P (Vertex artifact paths are FUSE paths)."""
    if path.startswith("/gcs/"):
        return "gs://" + path[len("/gcs/") :]
    return path


def parse_pipeline_job(resource_name: str) -> tuple[str, str, str] | None:
    """``(project, location, job id)`` from a pipeline job resource name, or None when the
    task is not running on Vertex (the local runner leaves the placeholder unresolved)."""
    m = _RESOURCE.match(resource_name or "")
    return (m.group(1), m.group(2), m.group(3)) if m else None


def build_job_spec(
    cfg: RunConfig,
    pools: list[dict[str, Any]],
    *,
    model_dir: str,
    teacher_dir: str | None,
    out_dir: str,
) -> tuple[list[dict[str, Any]], str, str]:
    """Worker pools with the command filled in, the config file path and the report path.
    The config goes in a file beside the output (not on the command line: it can be long)."""
    config_path = out_dir.rstrip("/") + CONFIG_SUFFIX
    report_path = out_dir.rstrip("/") + REPORT_SUFFIX
    args = ["--config-json", f"@{config_path}", "--model-dir", model_dir, "--out-dir", out_dir, "--report", report_path]
    if teacher_dir:
        args += ["--teacher-dir", teacher_dir]
    command = launch_command(cfg.recover.custom_job, args)
    filled = []
    for pool in pools:
        pool = json.loads(json.dumps(pool))
        pool["container_spec"]["command"] = command
        filled.append(pool)
    return filled, config_path, report_path


def submit_and_wait(
    cfg: RunConfig,
    pools: list[dict[str, Any]],
    *,
    project: str,
    location: str,
    display_name: str,
    base_output_dir: str,
) -> str:
    """Submit the custom job and block until it ends; return its resource name.
    Raises :class:`RecoveryError` if it did not succeed."""
    from google.cloud import aiplatform

    job_cfg = cfg.recover.custom_job
    job = aiplatform.CustomJob(
        display_name=display_name[:128],
        worker_pool_specs=pools,
        base_output_dir=base_output_dir,
        project=project,
        location=location,
        labels={"medprune-stage": "recover"},
    )
    run_kwargs: dict[str, Any] = {
        "service_account": job_cfg.service_account,
        "timeout": int(job_cfg.timeout_hours * 3600),
        "restart_job_on_worker_restart": True,  # a preempted worker restarts and resumes
        "sync": True,
    }
    if job_cfg.spot:
        from google.cloud.aiplatform_v1.types import custom_job as custom_job_types

        run_kwargs["scheduling_strategy"] = custom_job_types.Scheduling.Strategy.SPOT
    try:
        job.run(**run_kwargs)
    except Exception as exc:
        raise RecoveryError(f"recover custom job {display_name} failed: {exc}") from exc
    return job.resource_name


def run_recover_step(
    config_json: str,
    worker_pools_json: str,
    pipeline_job_resource_name: str,
    *,
    model_dir: str,
    teacher_dir: str | None,
    out_dir: str,
    progress=print,
) -> dict:
    """The body of the pipeline's recover launcher task: on Vertex submit the custom job and
    return its report; elsewhere run :func:`medprune.recover.stage.stage_recover` in process."""
    from medprune.io.atomic import atomic_write_text
    from medprune.recover.stage import stage_recover

    cfg = RunConfig.from_json(config_json)
    where = parse_pipeline_job(pipeline_job_resource_name)
    if where is None or not cfg.recover.enabled or cfg.recover.steps == 0:
        progress("recover: running in process")
        return stage_recover(cfg, model_dir, out_dir, teacher_dir=teacher_dir, progress=progress)
    project, location, pipeline_job = where
    pools, config_path, report_path = build_job_spec(
        cfg, json.loads(worker_pools_json), model_dir=model_dir, teacher_dir=teacher_dir, out_dir=out_dir
    )
    atomic_write_text(config_path, config_json)
    name = submit_and_wait(
        cfg,
        pools,
        project=project,
        location=location,
        display_name=f"{pipeline_job}-recover",
        base_output_dir=gcs_uri(str(Path(out_dir).parent)),
    )
    progress(f"recover custom job {name} finished")
    try:
        return json.loads(Path(report_path).read_text())
    except (OSError, ValueError) as exc:
        raise RecoveryError(f"recover custom job {name} finished but left no report at {report_path}: {exc}") from None
