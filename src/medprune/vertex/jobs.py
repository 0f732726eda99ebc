"""Submit and schedule compiled medprune pipelines on Vertex AI; upload templates.

    cfg = load_config("examples/dev.yaml")
    name = submit_pipeline(cfg, "pipeline.yaml", enable_caching=False)
    sched = schedule_pipeline(cfg, "pipeline.yaml", "TZ=Europe/London 0 3 * * 1")
    package, version = upload_template("pipeline.yaml", cfg.vertex.template_repository, ["v1"])

Project, location, bucket, service account, network, CMEK and labels come from the
config (``vertex:``), so the compiled YAML stays free of any environment.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from medprune.config import RunConfig, VertexConfig, resolve_vertex
from medprune.errors import ConfigError, VertexError
from medprune.vertex.client import aiplatform_init
from medprune.vertex.template import check_template_matches

log = logging.getLogger(__name__)

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")


def validate_cron(cron: str) -> str:
    """Check a Vertex AI schedule cron: optional ``TZ=Area/City`` (or ``CRON_TZ=``) and five
    fields. Returns it with whitespace normalised; raises ConfigError saying what is wrong."""
    parts = cron.split()
    if parts and re.match(r"^(CRON_)?TZ=", parts[0]):
        tz = parts[0].split("=", 1)[1]
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"cron {cron!r}: unknown time zone {tz!r} (use e.g. TZ=Europe/London)"
            ) from None
        fields = parts[1:]
    else:
        fields = parts
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f"cron {cron!r}: expected 'TZ=Area/City MIN HOUR DAY MONTH WEEKDAY', "
            "e.g. 'TZ=America/New_York 0 3 * * 1'"
        )
    return " ".join(parts)


def _rfc3339(value: str | datetime | None, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{what} {value!r}: not an RFC 3339 time like 2026-01-05T03:00:00Z"
            ) from None
    if dt.tzinfo is None:
        raise ConfigError(f"{what} {value!r}: give a time zone (e.g. a trailing Z for UTC)")
    return dt.isoformat().replace("+00:00", "Z")


def _require_vertex(cfg: RunConfig) -> VertexConfig:
    if cfg.vertex is None:
        raise ConfigError("this command needs the 'vertex' section in the config")
    return cfg.vertex


def _template_inputs(template_path: str | Path) -> set[str]:
    path = Path(template_path)
    if not path.is_file():
        raise ConfigError(f"{path}: compiled pipeline not found (run `medprune compile` first)")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path}: not a compiled KFP pipeline (no root definition)") from None
    return set(params)


def pipeline_parameters(
    cfg: RunConfig, template_path: str | Path, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Values for the pipeline's parameters that medprune knows, set only where the
    compiled template declares them: ``config_json`` (the run config as JSON),
    ``project`` and ``location``. ``overrides`` are added last and must be declared too."""
    declared = _template_inputs(template_path)
    v = resolve_vertex(cfg.vertex) if cfg.vertex else None
    # The run gets the config with project, region and bucket resolved now, at submit
    # time, so the tasks on Vertex AI need no environment of their own.
    run_cfg = cfg.model_copy(update={"vertex": v}) if v is not None else cfg
    known: dict[str, Any] = {"config_json": run_cfg.to_json()}
    if v is not None:
        known.update(project=v.project, location=v.location)
    values = {k: val for k, val in known.items() if k in declared}
    for k, val in (overrides or {}).items():
        if k not in declared:
            raise ConfigError(
                f"parameter {k!r} is not an input of {template_path}; inputs are {sorted(declared)}"
            )
        values[k] = val
    return values


def _labels(cfg: RunConfig, v: VertexConfig) -> dict[str, str]:
    return {"app": "medprune", "medprune-run": cfg.run_name, **v.labels}


def _pipeline_job(
    cfg: RunConfig,
    template_path: str | Path,
    v: VertexConfig,
    enable_caching: bool | None,
    parameter_values: dict[str, Any] | None,
    job_id: str | None,
):
    from google.cloud import aiplatform

    # A template run with a config that would compile to another graph is refused here,
    # naming the fields, before anything is sent.
    check_template_matches(cfg, template_path)
    return aiplatform.PipelineJob(
        display_name=cfg.run_name,
        template_path=str(template_path),
        job_id=job_id,
        pipeline_root=v.pipeline_root,
        parameter_values=pipeline_parameters(cfg, template_path, parameter_values),
        enable_caching=v.enable_caching if enable_caching is None else enable_caching,
        encryption_spec_key_name=v.encryption_spec_key_name,
        labels=_labels(cfg, v),
        project=v.project,
        location=v.location,
    )


def submit_pipeline(
    cfg: RunConfig,
    template_path: str | Path,
    *,
    enable_caching: bool | None = None,
    parameter_values: dict[str, Any] | None = None,
    job_id: str | None = None,
    experiment: str | None = None,
) -> str:
    """Submit one run of a compiled pipeline; returns the PipelineJob resource name.

    ``enable_caching`` None uses ``vertex.enable_caching`` (None there: what the pipeline
    was compiled with). The run uses the config's service account, network, CMEK and labels.
    """
    v = aiplatform_init(_require_vertex(cfg))
    job = _pipeline_job(cfg, template_path, v, enable_caching, parameter_values, job_id)
    experiment = experiment or v.experiment
    try:
        if experiment:
            # The SDK's submit also associates the run with the experiment (metadata API).
            job.submit(service_account=v.service_account, network=v.network, experiment=experiment)
            name = job.resource_name
        else:
            name = _create_pipeline_job(job, v)
    except (ConfigError, VertexError):
        raise
    except Exception as exc:
        raise VertexError(f"submitting pipeline run {cfg.run_name!r} failed: {exc}") from exc
    log.info("submitted %s", name)
    return name


def check_pipeline_root(pipeline_root: str) -> None:
    """The pipeline-root bucket must exist (terraform creates it); medprune never creates
    buckets on the fly."""
    from google.api_core import exceptions as gexc

    from medprune.io.gcs import storage_client
    from medprune.io.uris import parse_gcs_uri

    bucket, _ = parse_gcs_uri(pipeline_root)
    try:
        exists = storage_client().bucket(bucket).exists()
    except gexc.GoogleAPICallError as exc:
        raise VertexError(f"cannot check pipeline root bucket gs://{bucket}: {exc}") from exc
    if not exists:
        raise ConfigError(
            f"pipeline root bucket gs://{bucket} does not exist (vertex.pipeline_root / "
            "staging_bucket); create it with infra/ (terraform apply)"
        )


def _create_pipeline_job(job: Any, v: VertexConfig) -> str:
    # PipelineJob.submit would also probe bucket ownership through Resource Manager (and
    # create missing buckets); we check the bucket ourselves and send the same request.
    assert v.pipeline_root is not None  # resolve_vertex fills it from the staging bucket
    check_pipeline_root(v.pipeline_root)
    resource = job._gca_resource  # the public accessor refuses before creation
    if v.service_account:
        resource.service_account = v.service_account
    if v.network:
        resource.network = v.network
    created = job.api_client.create_pipeline_job(
        parent=f"projects/{v.project}/locations/{v.location}",
        pipeline_job=resource,
        pipeline_job_id=job.job_id,
    )
    return created.name


def schedule_pipeline(
    cfg: RunConfig,
    template_path: str | Path,
    cron: str,
    *,
    max_concurrent_runs: int = 1,
    start_time: str | datetime | None = None,
    end_time: str | datetime | None = None,
    max_run_count: int | None = None,
    enable_caching: bool | None = None,
    parameter_values: dict[str, Any] | None = None,
    display_name: str | None = None,
    replace: bool = False,
) -> str:
    """Create a Vertex AI schedule that runs the compiled pipeline on ``cron``
    (e.g. ``"TZ=Europe/London 0 3 * * 1"``); returns the schedule resource name.

    ``display_name`` defaults to ``RUN_NAME-schedule``; ``replace`` first deletes every
    schedule with that display name, so re-applying (Terraform) leaves exactly one."""
    cron = validate_cron(cron)
    if max_concurrent_runs < 1:
        raise ConfigError(f"max_concurrent_runs must be >= 1, got {max_concurrent_runs}")
    start = _rfc3339(start_time, "start_time")
    end = _rfc3339(end_time, "end_time")
    if start and end and start >= end:
        raise ConfigError(f"end_time {end} must be after start_time {start}")
    v = aiplatform_init(_require_vertex(cfg))
    job = _pipeline_job(cfg, template_path, v, enable_caching, parameter_values, None)
    display_name = display_name or default_schedule_name(cfg)
    if replace:
        delete_schedules(cfg, display_name)
    try:
        schedule = job.create_schedule(
            cron=cron,
            display_name=display_name,
            start_time=start,
            end_time=end,
            max_run_count=max_run_count,
            max_concurrent_run_count=max_concurrent_runs,
            service_account=v.service_account,
            network=v.network,
        )
    except Exception as exc:
        raise VertexError(f"creating schedule {cron!r} for {cfg.run_name!r} failed: {exc}") from exc
    log.info("created schedule %s", schedule.resource_name)
    return schedule.resource_name


def default_schedule_name(cfg: RunConfig) -> str:
    return f"{cfg.run_name}-schedule"


def delete_schedules(cfg: RunConfig, display_name: str | None = None) -> list[str]:
    """Delete every Vertex AI schedule named ``display_name`` (default ``RUN_NAME-schedule``)
    in the config's project and region; returns their resource names (none: [])."""
    from google.cloud import aiplatform

    v = aiplatform_init(_require_vertex(cfg))
    name = display_name or default_schedule_name(cfg)
    if '"' in name:
        raise ConfigError(f"schedule display name {name!r} may not contain '\"'")
    try:
        found = aiplatform.PipelineJobSchedule.list(
            filter=f'display_name="{name}"', project=v.project, location=v.location
        )
        deleted = []
        for schedule in found:
            if schedule.display_name != name:
                continue
            deleted.append(schedule.resource_name)
            schedule.delete()
    except Exception as exc:
        raise VertexError(f"deleting schedules named {name!r} failed: {exc}") from exc
    for d in deleted:
        log.info("deleted schedule %s", d)
    return deleted


_AR_KFP_HOST = re.compile(r"^https://[a-z0-9\-]+-kfp\.pkg\.dev/[^/]+/[^/]+/?$")


def upload_template(
    template_path: str | Path,
    host: str,
    tags: list[str] | None = None,
    *,
    auth: Any = None,
) -> tuple[str, str]:
    """Upload a compiled pipeline to a KFP template repository (Artifact Registry:
    ``https://LOCATION-kfp.pkg.dev/PROJECT/REPO``); returns ``(package, version)``."""
    from kfp.registry import RegistryClient

    _template_inputs(template_path)  # fails clearly on a missing or non-pipeline file
    parts = urlsplit(host)
    loopback = parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost"}
    if not (_AR_KFP_HOST.match(host) or loopback):
        raise ConfigError(
            f"template repository {host!r}: expected https://LOCATION-kfp.pkg.dev/PROJECT/REPO"
        )
    for t in tags or []:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", t):
            raise ConfigError(f"tag {t!r}: letters, digits, '.', '_' or '-' only")
    client = RegistryClient(host=host, auth=auth)
    try:
        package, version = client.upload_pipeline(file_name=str(template_path), tags=tags or None)
    except Exception as exc:
        raise VertexError(f"uploading {template_path} to {host} failed: {exc}") from exc
    log.info("uploaded template %s version %s (tags %s)", package, version, tags)
    return package, version
