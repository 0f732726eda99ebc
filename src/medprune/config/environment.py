"""Behaviour that is not schema: filling config values from the environment.

``vertex.project``, ``vertex.location`` and ``vertex.staging_bucket`` may be left out of a
config and come from ``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_REGION`` and
``MEDPRUNE_BUCKET`` (or, inside a Vertex AI job, ``CLOUD_ML_PROJECT_ID`` / ``CLOUD_ML_REGION``);
``service_account``, ``encryption_spec_key_name``, ``network`` and ``template_repository``
from ``MEDPRUNE_SERVICE_ACCOUNT``, ``MEDPRUNE_KMS_KEY``, ``MEDPRUNE_NETWORK`` and
``MEDPRUNE_TEMPLATE_REPOSITORY`` (all printed by ``terraform output medprune_env``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import ValidationError

from medprune.config.validation import format_validation_errors
from medprune.config.vertex import VertexConfig
from medprune.errors import ConfigError

#: Optional ``vertex`` fields filled from these variables when the config leaves them out.
OPTIONAL_FROM_ENV = {
    "service_account": "MEDPRUNE_SERVICE_ACCOUNT",
    "encryption_spec_key_name": "MEDPRUNE_KMS_KEY",
    "network": "MEDPRUNE_NETWORK",
    "template_repository": "MEDPRUNE_TEMPLATE_REPOSITORY",
}


def resolve_vertex(vertex: VertexConfig, environ: Mapping[str, str] | None = None) -> VertexConfig:
    """A copy with project, location, staging bucket, pipeline root and API endpoint
    filled from the environment where the config leaves them out.

    Raises ConfigError naming the field and the variable when one stays unset.
    """
    env = os.environ if environ is None else environ
    data = vertex.model_dump()
    # CLOUD_ML_*: what Vertex AI sets inside its jobs, so a task finds its own project.
    data["project"] = (
        vertex.project or env.get("GOOGLE_CLOUD_PROJECT") or env.get("CLOUD_ML_PROJECT_ID") or None
    )
    data["location"] = (
        vertex.location or env.get("GOOGLE_CLOUD_REGION") or env.get("CLOUD_ML_REGION") or None
    )
    if not vertex.staging_bucket and env.get("MEDPRUNE_BUCKET"):
        bucket = env["MEDPRUNE_BUCKET"]
        data["staging_bucket"] = bucket if bucket.startswith("gs://") else f"gs://{bucket}"
    data["api_endpoint"] = vertex.api_endpoint or env.get("MEDPRUNE_VERTEX_API_ENDPOINT") or None
    # What terraform outputs (`terraform output -json medprune_env`), so example configs
    # need not name a project's account, key, network or repository.
    for field, var in OPTIONAL_FROM_ENV.items():
        data[field] = getattr(vertex, field) or env.get(var) or None
    missing = [
        f"vertex.{field} (or ${var})"
        for field, var in (
            ("project", "GOOGLE_CLOUD_PROJECT"),
            ("location", "GOOGLE_CLOUD_REGION"),
            ("staging_bucket", "MEDPRUNE_BUCKET"),
        )
        if not data[field]
    ]
    if missing:
        raise ConfigError("vertex config incomplete: set " + ", ".join(missing))
    if not data["pipeline_root"]:
        data["pipeline_root"] = data["staging_bucket"].rstrip("/") + "/pipeline_root"
    try:
        return VertexConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, "vertex (from environment)")) from None
