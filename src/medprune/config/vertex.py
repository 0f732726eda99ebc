"""The `vertex` section: where and how medprune runs on Vertex AI (schema only; the
environment lookups live in :mod:`medprune.config.environment`)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from medprune.config._base import _Strict

_GCS_BUCKET_URI = re.compile(r"^gs://[a-z0-9][a-z0-9_.\-]{1,220}[a-z0-9](/.*)?$")
_LABEL = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_\-]{0,63}$")
DEFAULT_SERVING_IMAGE = (
    "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest"
)


class VertexConfig(_Strict):
    """Where and how medprune runs on Vertex AI and registers into its Model Registry.

    ``project``, ``location`` and ``staging_bucket`` may be left out and come from the
    environment (``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_REGION``, ``MEDPRUNE_BUCKET``);
    see :meth:`resolved`.
    """

    project: str | None = Field(
        default=None, description="GCP project id; defaults to $GOOGLE_CLOUD_PROJECT."
    )
    location: str | None = Field(
        default=None,
        description="Vertex AI region, e.g. us-central1; defaults to $GOOGLE_CLOUD_REGION.",
    )
    staging_bucket: str | None = Field(
        default=None,
        description="gs://BUCKET[/PREFIX] for model artifacts and pipeline runs; "
        "defaults to gs://$MEDPRUNE_BUCKET.",
    )
    pipeline_root: str | None = Field(
        default=None,
        description="gs:// root for pipeline run outputs; defaults to STAGING_BUCKET/pipeline_root.",
    )
    service_account: str | None = Field(
        default=None, description="Run-as service account email for pipeline runs and schedules."
    )
    network: str | None = Field(
        default=None,
        description="VPC network to peer pipeline runs with: projects/NUMBER/global/networks/NAME.",
    )
    encryption_spec_key_name: str | None = Field(
        default=None,
        description="CMEK key for runs and registered models: "
        "projects/P/locations/L/keyRings/R/cryptoKeys/K.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels put on pipeline runs, schedules and models."
    )
    enable_caching: bool | None = Field(
        default=None,
        description="Step caching for runs: true, false, or null to follow the compiled pipeline.",
    )
    experiment: str | None = Field(
        default=None, description="Vertex AI Experiment to associate submitted runs with."
    )
    serving_container_image_uri: str = Field(
        default=DEFAULT_SERVING_IMAGE,
        description="Serving container recorded with the registered model (a vLLM image by default).",
    )
    serving_container_args: list[str] = Field(
        default_factory=lambda: [
            "python",
            "-m",
            "vllm.entrypoints.api_server",
            "--host=0.0.0.0",
            "--port=8080",
            "--model={artifact_uri}",
        ],
        description="Serving container arguments; '{artifact_uri}' becomes the model's gs:// URI.",
    )
    serving_container_predict_route: str = Field(default="/generate", description="Predict route.")
    serving_container_health_route: str = Field(default="/ping", description="Health route.")
    serving_container_ports: list[int] = Field(
        default_factory=lambda: [8080], description="Ports the serving container listens on."
    )
    is_default_version: bool = Field(
        default=False,
        description="Make each newly registered version the model's default version.",
    )
    parent_model: str | None = Field(
        default=None,
        description="Model to add versions to (ID or projects/P/locations/L/models/ID). If unset, "
        "a model with display name model.name is looked up and used, else a new model is created.",
    )
    promotion_alias: str | None = Field(
        default=None,
        description="Alias (e.g. 'production') moved to the new version when the gate passes.",
    )
    api_endpoint: str | None = Field(
        default=None,
        description="Override of the Vertex AI API endpoint (tests use http://127.0.0.1:PORT); "
        "$MEDPRUNE_VERTEX_API_ENDPOINT also sets it.",
    )
    template_repository: str | None = Field(
        default=None,
        description="KFP Artifact Registry repository for pipeline templates: "
        "https://LOCATION-kfp.pkg.dev/PROJECT/REPO.",
    )
    upload_workers: int = Field(default=8, ge=1, le=64, description="Parallel GCS uploads.")

    @field_validator("staging_bucket", "pipeline_root")
    @classmethod
    def _gs_uri(cls, v: str | None) -> str | None:
        if v is not None and not _GCS_BUCKET_URI.match(v):
            raise ValueError(f"must be gs://BUCKET[/PREFIX], got {v!r}")
        return v.rstrip("/") if v else v

    @field_validator("labels")
    @classmethod
    def _label_form(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _LABEL.match(key) or not _LABEL_VALUE.match(value):
                raise ValueError(
                    f"label {key}={value!r}: keys must match [a-z][a-z0-9_-]{{0,62}} and values "
                    "[a-z0-9_-]{0,63}"
                )
        return v

    @field_validator("promotion_alias")
    @classmethod
    def _alias_form(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z][a-z0-9\-]{0,126}[a-z0-9]", v):
            raise ValueError(f"alias {v!r} must be lower case letters, digits or -")
        return v

    @field_validator("encryption_spec_key_name")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+", v
        ):
            raise ValueError(f"must be projects/P/locations/L/keyRings/R/cryptoKeys/K, got {v!r}")
        return v
