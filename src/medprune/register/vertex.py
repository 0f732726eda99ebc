"""Register a pruned model in the Vertex AI Model Registry (the ``vertex`` registry target).

    result = register_vertex(Path("runs/r1/model"), cfg=cfg,
                             metadata={"metrics": {"accuracy": 0.61}}, gate_passed=True)
    result["uri"]  # https://us-central1-aiplatform.googleapis.com/v1/projects/.../models/123@2

What happens, in order, so that a failure leaves nothing half registered:

1. a failed gate is refused before anything is sent;
2. the parent model is resolved (``vertex.parent_model``, else the model whose display
   name is ``model.name``, else a new model) -- a configured parent that does not exist
   is an error;
3. the model directory is uploaded to a new prefix
   ``STAGING_BUCKET/models/NAME/VERSION_TAG`` (parallel, checksums verified);
4. one ``models:upload`` creates the version with its aliases (``registry.aliases`` and
   the promotion alias) in a single server-side step, so aliases move only if the
   version exists. If it fails, the uploaded files are deleted and RegistryError raised.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medprune.config import RunConfig, VertexConfig
from medprune.errors import ConfigError, RegistryError, StorageError
from medprune.io.gcs import delete_prefix, upload_dir
from medprune.io.uris import parse_gcs_uri
from medprune.vertex.client import aiplatform_init, model_console_uri

log = logging.getLogger(__name__)

_VERTEX_ALIAS = re.compile(r"[a-z][a-zA-Z0-9\-]{0,126}[a-z0-9]")


def label_value(value: Any) -> str:
    """A Vertex label value: lower case letters, digits, '-' and '_', at most 63 chars."""
    text = re.sub(r"[^a-z0-9_\-]+", "-", str(value).lower()).strip("-")
    return text[:63]


def model_labels(cfg: RunConfig, metadata: dict[str, Any], gate_passed: bool) -> dict[str, str]:
    """Labels on the registered version: method, sparsity, pattern, base model, gate result,
    plus ``vertex.labels``."""
    base = metadata.get("base_model") or Path(cfg.model.source.rstrip("/")).name
    labels = {
        "medprune": "true",
        "method": label_value(cfg.prune.method),
        # label values cannot hold '.', so 0.5 is written as 0_5
        "sparsity": label_value(str(cfg.prune.sparsity).replace(".", "_")),
        "pattern": label_value(cfg.prune.pattern.replace(":", "-")),
        "base-model": label_value(base) or "unknown",
        "gate": "passed" if gate_passed else "failed",
    }
    if cfg.vertex is not None:
        labels.update(cfg.vertex.labels)
    return labels


def model_description(cfg: RunConfig, metadata: dict[str, Any]) -> str:
    """A one-paragraph description with the key metrics."""
    base = metadata.get("base_model") or cfg.model.source
    parts = [
        f"medprune: {cfg.prune.method} pruning to {cfg.prune.sparsity:.0%} sparsity "
        f"({cfg.prune.pattern}) of {base}"
        + (f", recovered for {cfg.recover.steps} steps" if cfg.recover.enabled else "")
        + "."
    ]
    metrics = metadata.get("metrics") or {}
    shown = [f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float))]
    if shown:
        parts.append("Metrics: " + ", ".join(shown) + ".")
    if metadata.get("run_id"):
        parts.append(f"Run: {metadata['run_id']}.")
    return " ".join(parts)[:1000]


def _full_model_name(parent: str, v: VertexConfig) -> str:
    if parent.startswith("projects/"):
        if not re.fullmatch(r"projects/[^/]+/locations/[^/]+/models/[^/@]+", parent):
            raise ConfigError(
                f"vertex.parent_model {parent!r}: expected a model ID or "
                "projects/P/locations/L/models/ID"
            )
        return parent
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", parent):
        raise ConfigError(f"vertex.parent_model {parent!r}: not a model ID")
    return f"projects/{v.project}/locations/{v.location}/models/{parent}"


def resolve_parent_model(v: VertexConfig, display_name: str) -> str | None:
    """The model new versions go under: the configured parent (which must exist), else
    the one model named ``display_name``, else None (a new model)."""
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform

    if v.parent_model:
        name = _full_model_name(v.parent_model, v)
        try:
            aiplatform.Model(model_name=name)
        except gexc.NotFound:
            raise RegistryError(
                f"vertex.parent_model {name} not found; create it, or unset vertex.parent_model "
                "to add versions to the model named by model.name"
            ) from None
        return name
    found = aiplatform.Model.list(filter=f'display_name="{display_name}"')
    if len(found) > 1:
        raise RegistryError(
            f"{len(found)} models are named {display_name!r}; set vertex.parent_model to choose: "
            + ", ".join(m.resource_name for m in found)
        )
    return found[0].resource_name if found else None


def _version_tag(metadata: dict[str, Any]) -> str:
    tag = metadata.get("run_id") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{label_value(tag)}-{uuid.uuid4().hex[:8]}"


def register_vertex(
    model_dir: str | Path,
    *,
    cfg: RunConfig,
    metadata: dict[str, Any] | None = None,
    gate_passed: bool,
) -> dict[str, Any]:
    """Upload ``model_dir`` and register it as a new version in the Vertex AI Model Registry.

    ``metadata`` may carry ``metrics`` (name -> number, shown in the description),
    ``base_model`` and ``run_id``. Raises RegistryError, with nothing uploaded, when the
    gate did not pass. Returns ``resource_name``, ``version_id``, ``versioned_name``,
    ``uri`` (for a ``google.VertexModel`` artifact), ``aliases``, ``artifact_uri``,
    ``labels`` and ``vertex_model_metadata`` (``{"resourceName": ...}``).
    """
    metadata = dict(metadata or {})
    if not gate_passed:
        raise RegistryError(
            f"gate did not pass for {cfg.model.name!r}; refusing to register it in Vertex AI"
        )
    if cfg.vertex is None:
        raise ConfigError("registry.target 'vertex' needs the 'vertex' section in the config")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise RegistryError(f"{model_dir}: not a saved model directory (no config.json)")

    aliases = list(
        dict.fromkeys(
            [
                *cfg.registry.aliases,
                *([cfg.vertex.promotion_alias] if cfg.vertex.promotion_alias else []),
            ]
        )
    )
    bad = [a for a in aliases if not _VERTEX_ALIAS.fullmatch(a)]
    if bad:
        raise ConfigError(
            f"registry.aliases {bad}: Vertex AI aliases are 2-128 characters of lower case "
            "letters, digits and '-', starting with a letter (no '_')"
        )

    v = aiplatform_init(cfg.vertex)
    from google.cloud import aiplatform

    # resolve_vertex (in aiplatform_init) raised unless the bucket and region are set.
    assert v.staging_bucket is not None and v.location is not None
    parent = resolve_parent_model(v, cfg.model.name)
    bucket, prefix = parse_gcs_uri(v.staging_bucket)
    artifact_uri = "gs://" + "/".join(
        p for p in (bucket, prefix, "models", cfg.model.name, _version_tag(metadata)) if p
    )
    labels = model_labels(cfg, metadata, gate_passed)

    try:
        upload_dir(model_dir, artifact_uri, max_workers=v.upload_workers)
    except StorageError as exc:
        raise RegistryError(f"uploading {model_dir} to {artifact_uri} failed: {exc}") from exc

    try:
        model = aiplatform.Model.upload(
            display_name=cfg.model.name,
            artifact_uri=artifact_uri,
            parent_model=parent,
            is_default_version=v.is_default_version,
            version_aliases=list(aliases),  # the SDK appends "default" in place
            labels=labels,
            description=model_description(cfg, metadata),
            serving_container_image_uri=v.serving_container_image_uri,
            serving_container_args=[
                a.replace("{artifact_uri}", artifact_uri) for a in v.serving_container_args
            ],
            serving_container_predict_route=v.serving_container_predict_route,
            serving_container_health_route=v.serving_container_health_route,
            serving_container_ports=v.serving_container_ports,
            encryption_spec_key_name=v.encryption_spec_key_name,
            sync=True,
        )
    except Exception as exc:
        try:
            delete_prefix(artifact_uri)
        except Exception:  # noqa: BLE001 - the registration error is what matters
            log.warning("could not clean up %s after a failed registration", artifact_uri)
        raise RegistryError(
            f"registering {cfg.model.name!r} in Vertex AI failed; no version was created and "
            f"no alias moved ({exc})"
        ) from exc

    resource_name = model.resource_name
    version_id = model.version_id
    versioned = f"{resource_name}@{version_id}"
    result = {
        "resource_name": resource_name,
        "version_id": version_id,
        "versioned_name": versioned,
        "uri": model_console_uri(v.location, versioned),
        "aliases": list(model.version_aliases),
        "artifact_uri": artifact_uri,
        "labels": labels,
        "vertex_model_metadata": {"resourceName": versioned},
    }
    log.info("registered %s (aliases %s)", versioned, result["aliases"])
    return result


def promote_version(
    cfg: RunConfig, model_resource_name: str, version_id: str, alias: str
) -> list[str]:
    """Move ``alias`` (e.g. ``production``) to one version of a registered model, taking it
    off whichever version had it; returns that version's aliases afterwards."""
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform

    if cfg.vertex is None:
        raise ConfigError("promotion needs the 'vertex' section in the config")
    if not re.fullmatch(r"[a-z][a-z0-9\-]{0,126}[a-z0-9]", alias):
        raise ConfigError(f"alias {alias!r} must be lower case letters, digits or -")
    aiplatform_init(cfg.vertex)
    try:
        registry = aiplatform.models.ModelRegistry(model_resource_name)
        registry.add_version_aliases([alias], version=version_id)
        return list(registry.get_version_info(version_id).version_aliases)
    except gexc.NotFound:
        raise RegistryError(
            f"{model_resource_name}@{version_id} not found; no alias moved"
        ) from None
    except gexc.GoogleAPICallError as exc:
        raise RegistryError(
            f"moving alias {alias!r} to {model_resource_name}@{version_id} failed: {exc}"
        ) from exc
