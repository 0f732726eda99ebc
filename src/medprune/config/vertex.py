"""The `vertex` section: where and how medprune runs on Vertex AI (schema only; the
environment lookups live in :mod:`medprune.config.environment`)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from medprune.config._base import _Strict

_GCS_BUCKET_URI = re.compile(r"^gs://[a-z0-9][a-z0-9_.\-]{1,220}[a-z0-9](/.*)?$")
_LABEL = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_\-]{0,63}$")

#: Vertex AI's rule for a model version alias, from the Model proto's ``version_aliases``
#: (google/cloud/aiplatform_v1/types/model.py: "The format is [a-z][a-zA-Z0-9-]{0,126}[a-z0-9]
#: to distinguish from version_id"): 2-128 characters, no '_', not a number.
VERTEX_ALIAS = re.compile(r"[a-z][a-zA-Z0-9\-]{0,126}[a-z0-9]")

#: Aliases with one meaning each, moved only by ``medprune deploy`` / ``promote`` /
#: ``rollback`` (medprune.serve.vertex_endpoint): ``production`` is the version holding the
#: endpoint's stable traffic share, ``previous-production`` the one it replaced. Registration
#: never puts them on a version (it has not been deployed yet).
PRODUCTION_ALIAS = "production"
PREVIOUS_PRODUCTION_ALIAS = "previous-production"
SERVING_ALIASES = (PRODUCTION_ALIAS, PREVIOUS_PRODUCTION_ALIAS)

# Google's Model Garden vLLM serving image, pinned by tag (a ':latest' tag would change
# what a registered version serves under it). Pin by digest with
# vertex.serving_container_image_uri: ...pytorch-vllm-serve@sha256:...
DEFAULT_SERVING_IMAGE = (
    "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/"
    "pytorch-vllm-serve:20240620_0916_RC00"
)
#: Shared memory and deployment timeout of the serving container: the values Google's Model
#: Garden vLLM deployment samples pass to ``Model.upload``
#: (``serving_container_shared_memory_size_mb=16 * 1024``,
#: ``serving_container_deployment_timeout=7200``): vLLM's tensor-parallel workers talk
#: through /dev/shm, and loading a large model takes longer than the default timeout.
DEFAULT_SHARED_MEMORY_MB = 16 * 1024
DEFAULT_DEPLOYMENT_TIMEOUT_S = 7200


def check_pinned_image(uri: str) -> str:
    """``uri`` pinned by digest (``@sha256:...``) or by a tag other than ``latest``."""
    if "@sha256:" in uri:
        return uri
    last = uri.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError(f"{uri!r} has no tag; pin it by tag or digest (@sha256:...)")
    if last.rsplit(":", 1)[1] == "latest":
        raise ValueError(
            f"{uri!r} is ':latest', which moves under a registered version; pin it by a "
            "release tag or digest (@sha256:...)"
        )
    return uri


def check_registration_alias(alias: str) -> str:
    """A Vertex AI alias (:data:`VERTEX_ALIAS`) that is not a serving alias."""
    if not VERTEX_ALIAS.fullmatch(alias):
        raise ValueError(
            f"alias {alias!r}: Vertex AI aliases are 2-128 characters of letters, digits and "
            "'-', starting with a lower case letter and ending with one or a digit (no '_'); "
            "rule [a-z][a-zA-Z0-9-]{0,126}[a-z0-9]"
        )
    if alias in SERVING_ALIASES:
        raise ValueError(
            f"alias {alias!r} names the version serving on the endpoint and is moved only by "
            "`medprune deploy` (first version) / `promote` / `rollback`; registration puts "
            "it on a version nothing serves yet. Use a registration alias such as 'candidate'"
        )
    return alias


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
        description="VPC network pipeline runs and the recover custom job are peered with (VPC "
        "Network Peering): projects/NUMBER/global/networks/NAME. Endpoints do not use it: "
        "serve.endpoint.network (Private Service Connect).",
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
        description="Serving container recorded with the registered model (Model Garden's vLLM "
        "image by default), pinned by tag or digest (':latest' is refused).",
    )
    serving_container_args: list[str] = Field(
        default_factory=lambda: [
            "python",
            "-m",
            "vllm.entrypoints.api_server",
            "--host=0.0.0.0",
            "--port=8080",
            "--model={artifact_uri}",
            "--tensor-parallel-size={tensor_parallel_size}",
        ],
        description="Serving container arguments; '{artifact_uri}' becomes the model's gs:// URI "
        "and '{tensor_parallel_size}' serve.endpoint.accelerator_count (1 without accelerator).",
    )
    serving_container_predict_route: str = Field(default="/generate", description="Predict route.")
    serving_container_health_route: str = Field(default="/ping", description="Health route.")
    serving_container_ports: list[int] = Field(
        default_factory=lambda: [8080], description="Ports the serving container listens on."
    )
    serving_container_shared_memory_size_mb: int | None = Field(
        default=DEFAULT_SHARED_MEMORY_MB,
        ge=1,
        description="/dev/shm of the serving container in MB (Model Garden's vLLM samples: 16384).",
    )
    serving_container_deployment_timeout_s: int | None = Field(
        default=DEFAULT_DEPLOYMENT_TIMEOUT_S,
        ge=1,
        description="Seconds Vertex AI waits for the serving container to become healthy "
        "(Model Garden's vLLM samples: 7200).",
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
        description="Extra registration alias (e.g. 'gate-passed') moved to each new version "
        "when the gate passes, with registry.aliases. Never a serving alias ('production', "
        "'previous-production'): those are moved by `medprune deploy` / `promote` / `rollback`.",
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
        return None if v is None else check_registration_alias(v)

    @field_validator("serving_container_image_uri")
    @classmethod
    def _pinned_image(cls, v: str) -> str:
        return check_pinned_image(v)

    @field_validator("encryption_spec_key_name")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+", v
        ):
            raise ValueError(f"must be projects/P/locations/L/keyRings/R/cryptoKeys/K, got {v!r}")
        return v
