"""One place that sets up the Vertex AI SDK from a :class:`~medprune.config.VertexConfig`.

The SDK talks REST. An API endpoint override (``vertex.api_endpoint`` or
``$MEDPRUNE_VERTEX_API_ENDPOINT``) points it elsewhere; an ``http://`` loopback endpoint
(the tests' fake server) is used with anonymous credentials, anything else with the
application default credentials.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from google.auth.credentials import AnonymousCredentials, Credentials

from medprune.config import VertexConfig, resolve_vertex
from medprune.errors import ConfigError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def credentials_for_endpoint(
    endpoint: str | None, *, field: str = "vertex.api_endpoint"
) -> Credentials | None:
    """Anonymous credentials for an ``http://`` loopback endpoint (a test fake), None (the
    application default credentials) otherwise; plain http elsewhere is refused."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme == "http":
        if parts.hostname not in _LOOPBACK:
            raise ConfigError(
                f"{field} {endpoint!r}: plain http is only allowed on loopback "
                "(127.0.0.1, localhost) for tests; use https"
            )
        return AnonymousCredentials()
    return None


def aiplatform_init(vcfg: VertexConfig) -> VertexConfig:
    """Initialise ``google.cloud.aiplatform`` for this config; returns the resolved config
    (project, location, bucket and endpoint filled from the environment where unset)."""
    return init_resolved(resolve_vertex(vcfg))


def init_resolved(v: VertexConfig) -> VertexConfig:
    """Initialise the SDK with ``v`` exactly as it is: no environment lookups, so a config
    resolved once and then changed per region (another region's key, or none; no network)
    is not filled again from ``$MEDPRUNE_KMS_KEY`` / ``$MEDPRUNE_NETWORK``. The SDK falls
    back to these global settings when a call leaves them out (``Endpoint.create`` takes
    ``initializer.global_config.get_encryption_spec``, ``PrivateEndpoint.create`` and
    ``PipelineJob`` ``global_config.network``), so what is set here is what is used."""
    from google.cloud import aiplatform  # heavy import, only when talking to Vertex
    from google.cloud.aiplatform import initializer

    # aiplatform.init keeps an earlier key or network when given None (initializer.py: "if
    # encryption_spec_key_name: ..." / "if network is not None: ..."), so a region without a
    # key would inherit the previous region's. Clear both first; init sets what v has.
    initializer.global_config._encryption_spec_key_name = None
    initializer.global_config._network = None
    aiplatform.init(
        project=v.project,
        location=v.location,
        staging_bucket=v.staging_bucket,
        credentials=credentials_for_endpoint(v.api_endpoint),
        encryption_spec_key_name=v.encryption_spec_key_name,
        service_account=v.service_account,
        network=v.network,
        api_endpoint=v.api_endpoint,
        api_transport="rest",
    )
    return v


def aiplatform_init_for(project: str, location: str, api_endpoint: str | None = None) -> None:
    """Initialise the SDK for one project and region only (reading a model by URI);
    the endpoint defaults to ``$MEDPRUNE_VERTEX_API_ENDPOINT``."""
    import os

    from google.cloud import aiplatform

    endpoint = api_endpoint or os.environ.get("MEDPRUNE_VERTEX_API_ENDPOINT") or None
    aiplatform.init(
        project=project,
        location=location,
        credentials=credentials_for_endpoint(endpoint),
        api_endpoint=endpoint,
        api_transport="rest",
    )


def model_console_uri(location: str, resource_name: str) -> str:
    """``https://LOCATION-aiplatform.googleapis.com/v1/RESOURCE_NAME``: the URI a
    ``google.VertexModel`` artifact carries so the console links run and model."""
    return f"https://{location}-aiplatform.googleapis.com/v1/{resource_name}"


_JOB_RESOURCE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/pipelineJobs/[^/]+$")


def environment_from_run(job_resource_name: str, pipeline_root: str) -> dict[str, str]:
    """Project, region and bucket of the running pipeline, from the values of kfp's
    ``PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER`` and ``PIPELINE_ROOT_PLACEHOLDER``:
    ``{"GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_REGION", "MEDPRUNE_BUCKET"}`` where they can be
    read (a local run yields none). The compiled template thus names no environment."""
    env: dict[str, str] = {}
    m = _JOB_RESOURCE.match(job_resource_name or "")
    if m:
        env["GOOGLE_CLOUD_PROJECT"], env["GOOGLE_CLOUD_REGION"] = m.group(1), m.group(2)
    if (pipeline_root or "").startswith("gs://"):
        bucket = pipeline_root[len("gs://") :].split("/", 1)[0]
        if bucket:
            env["MEDPRUNE_BUCKET"] = bucket
    return env
