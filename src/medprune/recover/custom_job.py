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
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medprune.config import CustomJobConfig, RunConfig
from medprune.errors import RecoveryError
from medprune.io.fuse import gcs_uri

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
    """The container command of every worker: one process, or
    :mod:`medprune.recover.launch`, which reads the node's place in the cluster from the
    environment Vertex AI sets (``CLUSTER_SPEC``, or ``MASTER_ADDR``/``MASTER_PORT``/
    ``WORLD_SIZE``/``RANK``) and starts ``accelerate launch`` with one process per
    accelerator."""
    if job.launcher == "python" or not job.accelerator_type:
        return ["python", "-m", "medprune.recover", *module_args]
    per_node = max(job.accelerator_count, 1)
    mode = ["--fsdp"] if job.fsdp else ["--multi-gpu"]
    return [
        "python",
        "-m",
        "medprune.recover.launch",
        "--processes-per-node",
        str(per_node),
        *mode,
        "--",
        *module_args,
    ]


#: Where the pipeline's recover task runs: fixed when the pipeline is compiled, so the
#: cached task's inputs hold nothing that changes from run to run.
RUN_ON_VERTEX = "vertex"
RUN_LOCAL = "local"


def job_location(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(project, location)`` for the custom job: the config's (``medprune submit`` and
    ``schedule`` resolve them into the run's ``config_json``), else what Vertex AI sets in
    its jobs (``CLOUD_ML_PROJECT_ID`` / ``CLOUD_ML_REGION``) or ``GOOGLE_CLOUD_*``. Not the
    pipeline job's resource name: that is different in every run, and as an input it would
    change the task's cache key every run."""
    env = os.environ if environ is None else environ
    v = cfg.vertex
    project = (
        (v.project if v else None)
        or env.get("GOOGLE_CLOUD_PROJECT")
        or env.get("CLOUD_ML_PROJECT_ID")
    )
    location = (
        (v.location if v else None) or env.get("GOOGLE_CLOUD_REGION") or env.get("CLOUD_ML_REGION")
    )
    missing = [
        f for f, val in (("vertex.project", project), ("vertex.location", location)) if not val
    ]
    if missing or not project or not location:
        raise RecoveryError(
            f"recover.custom_job: {' and '.join(missing)} unknown (not in the config, nor "
            "$GOOGLE_CLOUD_PROJECT / $CLOUD_ML_PROJECT_ID, $GOOGLE_CLOUD_REGION / $CLOUD_ML_REGION); "
            "submit the run with `medprune submit`, which writes them into the run's config"
        )
    return project, location


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
    args = [
        "--config-json",
        f"@{config_path}",
        "--model-dir",
        model_dir,
        "--out-dir",
        out_dir,
        "--report",
        report_path,
    ]
    if teacher_dir:
        args += ["--teacher-dir", teacher_dir]
    command = launch_command(cfg.recover.custom_job, args)
    filled = []
    for pool in pools:
        pool = json.loads(json.dumps(pool))
        pool["container_spec"]["command"] = command
        filled.append(pool)
    return filled, config_path, report_path


def job_run_settings(cfg: RunConfig) -> dict[str, Any]:
    """Service account, network and CMEK key of the custom job: the job's own service
    account if set, else the pipeline's (``vertex.service_account``; Terraform lets it act
    as itself), and the pipeline's network and key, so the job runs with the same identity,
    on the same VPC and under the same key as the pipeline that started it."""
    v = cfg.vertex
    return {
        "service_account": cfg.recover.custom_job.service_account
        or (v.service_account if v else None),
        "network": v.network if v else None,
        "encryption_spec_key_name": v.encryption_spec_key_name if v else None,
    }


@contextmanager
def cancel_on_signals(
    cancel: Callable[[], None],
    what: str,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[None]:
    """While the block runs, SIGTERM / SIGINT (Vertex AI stops a cancelled pipeline task's
    container with SIGTERM) first calls ``cancel`` (so the custom job does not run on,
    holding its GPUs, after the pipeline was cancelled), then raises RecoveryError."""
    previous = {}

    def handler(signum, frame):
        try:
            cancel()
        finally:
            raise RecoveryError(f"{what}: cancelled (signal {signal.Signals(signum).name})")

    for s in signals:
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def submit_and_wait(
    cfg: RunConfig,
    pools: list[dict[str, Any]],
    *,
    project: str,
    location: str,
    display_name: str,
    base_output_dir: str,
    api_endpoint: str | None = None,
    progress=print,
) -> str:
    """Submit the custom job and block until it ends; return its resource name. The job is
    cancelled if this process is told to stop. Raises :class:`RecoveryError` if it did not
    succeed."""
    from google.cloud import aiplatform

    from medprune.vertex.client import aiplatform_init_for

    aiplatform_init_for(project, location, api_endpoint)
    job_cfg = cfg.recover.custom_job
    settings = job_run_settings(cfg)
    job = aiplatform.CustomJob(
        display_name=display_name[:128],
        worker_pool_specs=pools,
        base_output_dir=base_output_dir,
        # the SDK refuses to build a job without a staging bucket (none is set by
        # aiplatform.init inside a pipeline task): the job's own output directory
        staging_bucket=base_output_dir,
        project=project,
        location=location,
        labels={"medprune-stage": "recover"},
        encryption_spec_key_name=settings["encryption_spec_key_name"],
    )
    submit_kwargs: dict[str, Any] = {
        "service_account": settings["service_account"],
        "network": settings["network"],
        "timeout": int(job_cfg.timeout_hours * 3600),
        "restart_job_on_worker_restart": True,  # a preempted worker restarts and resumes
    }
    if job_cfg.spot:
        from google.cloud.aiplatform_v1.types import custom_job as custom_job_types

        submit_kwargs["scheduling_strategy"] = custom_job_types.Scheduling.Strategy.SPOT

    def cancel() -> None:
        if getattr(job, "_gca_resource", None) is not None and job._gca_resource.name:
            progress(f"cancelling custom job {job.resource_name}")
            job.cancel()

    with cancel_on_signals(cancel, f"recover custom job {display_name}"):
        try:
            job.submit(**submit_kwargs)
            progress(f"recover custom job {job.resource_name} submitted")
            job.wait_for_completion()
        except RecoveryError:
            raise
        except Exception as exc:
            raise RecoveryError(f"recover custom job {display_name} failed: {exc}") from exc
    return job.resource_name


def run_recover_step(
    config_json: str,
    worker_pools_json: str,
    run_on: str,
    *,
    model_dir: str,
    teacher_dir: str | None,
    out_dir: str,
    progress=print,
) -> dict:
    """The body of the pipeline's recover launcher task: with ``run_on`` ``"vertex"`` (a
    pipeline compiled for Vertex AI) submit the custom job and return its report; otherwise
    (kfp.local) run :func:`medprune.recover.stage.stage_recover` in process."""
    from medprune.io.atomic import atomic_write_text
    from medprune.recover.stage import stage_recover

    cfg = RunConfig.from_json(config_json)
    if run_on != RUN_ON_VERTEX or not cfg.recover.enabled or cfg.recover.steps == 0:
        progress("recover: running in process")
        return stage_recover(cfg, model_dir, out_dir, teacher_dir=teacher_dir, progress=progress)
    project, location = job_location(cfg)
    pools, config_path, report_path = build_job_spec(
        cfg,
        json.loads(worker_pools_json),
        model_dir=model_dir,
        teacher_dir=teacher_dir,
        out_dir=out_dir,
    )
    atomic_write_text(config_path, config_json)
    name = submit_and_wait(
        cfg,
        pools,
        project=project,
        location=location,
        display_name=f"{cfg.run_name}-recover",
        base_output_dir=gcs_uri(str(Path(out_dir).parent)),
        api_endpoint=(cfg.vertex.api_endpoint if cfg.vertex else None),
        progress=progress,
    )
    progress(f"recover custom job {name} finished")
    try:
        return json.loads(Path(report_path).read_text())
    except (OSError, ValueError) as exc:
        raise RecoveryError(
            f"recover custom job {name} finished but left no report at {report_path}: {exc}"
        ) from None
