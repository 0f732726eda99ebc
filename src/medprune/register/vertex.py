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
   ``STAGING_BUCKET/models/NAME/VERSION_TAG`` (parallel, checksums verified): the serving
   artifact, which vLLM reads whole, holds the Hugging Face files only; GGUF exports
   (``registry.export: [gguf]``: ``*.gguf``, ``Modelfile``, ``export.json``) go beside it,
   to ``VERSION_TAG-gguf``;
4. one ``models:upload`` creates the version with its registration aliases
   (``registry.aliases`` and ``vertex.promotion_alias``; never ``production``, which only
   ``medprune deploy`` / ``promote`` / ``rollback`` move) in a single server-side step, so
   aliases move only if the version exists. If it fails, the uploaded files are deleted
   and RegistryError raised.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medprune.config import RunConfig, VertexConfig
from medprune.config.serve import EndpointConfig
from medprune.config.vertex import check_registration_alias
from medprune.errors import ConfigError, RegistryError, StorageError
from medprune.io.gcs import delete_prefix, upload_dir
from medprune.io.uris import parse_gcs_uri
from medprune.vertex.client import aiplatform_init, model_console_uri
from medprune.vertex.models import model_version, models_named, upload_version

log = logging.getLogger(__name__)


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

    if v.parent_model:
        name = _full_model_name(v.parent_model, v)
        try:
            model_version(name)
        except gexc.NotFound:
            raise RegistryError(
                f"vertex.parent_model {name} not found; create it, or unset vertex.parent_model "
                "to add versions to the model named by model.name"
            ) from None
        return name
    found = models_named(display_name)
    if len(found) > 1:
        raise RegistryError(
            f"{len(found)} models are named {display_name!r}; set vertex.parent_model to choose: "
            + ", ".join(m.resource_name for m in found)
        )
    return found[0].resource_name if found else None


def tensor_parallel_size(endpoint: EndpointConfig) -> int:
    """vLLM's ``--tensor-parallel-size``: one shard per accelerator of a serving replica."""
    return endpoint.accelerator_count if endpoint.accelerator_type else 1


def serving_container(v: VertexConfig, endpoint: EndpointConfig, artifact_uri: str) -> dict:
    """The ``serving_container_*`` arguments of ``Model.upload``: the pinned image, the args
    with ``{artifact_uri}`` and ``{tensor_parallel_size}`` filled in (one shard per GPU of
    ``serve.endpoint``, as Google's Model Garden vLLM samples pass it), routes, ports, shared
    memory and deployment timeout."""
    tp = str(tensor_parallel_size(endpoint))
    return {
        "serving_container_image_uri": v.serving_container_image_uri,
        "serving_container_args": [
            a.replace("{artifact_uri}", artifact_uri).replace("{tensor_parallel_size}", tp)
            for a in v.serving_container_args
        ],
        "serving_container_predict_route": v.serving_container_predict_route,
        "serving_container_health_route": v.serving_container_health_route,
        "serving_container_ports": v.serving_container_ports,
        "serving_container_shared_memory_size_mb": v.serving_container_shared_memory_size_mb,
        "serving_container_deployment_timeout": v.serving_container_deployment_timeout_s,
    }


def is_export_file(name: str) -> bool:
    """A GGUF export file (``registry.export: [gguf]``), not part of the serving artifact."""
    from medprune.export.bundle import MANIFEST, MODELFILE

    return name.endswith(".gguf") or name in (MODELFILE, MANIFEST)


@contextmanager
def split_exports(model_dir: Path) -> Iterator[tuple[Path, Path | None]]:
    """``(serving_dir, exports_dir)``: the Hugging Face files (with their own completion
    marker) and the GGUF export files, each hard-linked into a temporary directory; with no
    export files, ``(model_dir, None)``."""
    from medprune.io.atomic import COMPLETE_MARKER, write_completion_marker

    files = [p for p in sorted(model_dir.iterdir()) if p.is_file()]
    exports = [p for p in files if is_export_file(p.name)]
    if not exports:
        yield model_dir, None
        return
    with tempfile.TemporaryDirectory(prefix="medprune-vertex-split-") as work:
        serving, extra = Path(work) / "serving", Path(work) / "exports"
        serving.mkdir()
        extra.mkdir()
        for p in files:
            dest = (extra if p in exports else serving) / p.name
            try:
                os.link(p, dest)
            except OSError:
                shutil.copy2(p, dest)
        if (serving / COMPLETE_MARKER).exists():  # the marker lists the serving files only
            (serving / COMPLETE_MARKER).unlink()
            write_completion_marker(serving)
        yield serving, extra


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
    # parse_config checked these already; a config built in code (model_copy) is checked here
    for a in aliases:
        try:
            check_registration_alias(a)
        except ValueError as exc:
            raise ConfigError(f"registry.aliases: {exc}") from None

    v = aiplatform_init(cfg.vertex)

    # resolve_vertex (in aiplatform_init) raised unless the bucket and region are set.
    assert v.staging_bucket is not None and v.location is not None
    parent = resolve_parent_model(v, cfg.model.name)
    bucket, prefix = parse_gcs_uri(v.staging_bucket)
    artifact_uri = "gs://" + "/".join(
        p for p in (bucket, prefix, "models", cfg.model.name, _version_tag(metadata)) if p
    )
    labels = model_labels(cfg, metadata, gate_passed)
    with split_exports(model_dir) as (serving_dir, exports_dir):
        exports_uri = f"{artifact_uri}-gguf" if exports_dir is not None else None
        uploaded = []
        try:
            upload_dir(serving_dir, artifact_uri, max_workers=v.upload_workers)
            uploaded.append(artifact_uri)
            if exports_dir is not None and exports_uri is not None:
                upload_dir(exports_dir, exports_uri, max_workers=v.upload_workers)
                uploaded.append(exports_uri)
        except StorageError as exc:
            _delete_uploads(uploaded)
            raise RegistryError(f"uploading {model_dir} to {artifact_uri} failed: {exc}") from exc
    description = model_description(cfg, metadata)
    if exports_uri:
        description = (description + f" GGUF: {exports_uri}.")[:1000]

    try:
        model = upload_version(
            display_name=cfg.model.name,
            artifact_uri=artifact_uri,
            parent_model=parent,
            is_default_version=v.is_default_version,
            version_aliases=list(aliases),  # the SDK appends "default" in place
            labels=labels,
            description=description,
            serving_container=serving_container(v, cfg.serve.endpoint, artifact_uri),
            encryption_spec_key_name=v.encryption_spec_key_name,
        )
    except Exception as exc:
        _delete_uploads(uploaded)
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
        "exports_uri": exports_uri,
        "labels": labels,
        "vertex_model_metadata": {"resourceName": versioned},
    }
    log.info("registered %s (aliases %s)", versioned, result["aliases"])
    return result


def _delete_uploads(uris: list[str]) -> None:
    for uri in uris:
        try:
            delete_prefix(uri)
        except Exception:  # the registration error is what matters
            log.warning("could not clean up %s after a failed registration", uri)


def promote_version(
    cfg: RunConfig, model_resource_name: str, version_id: str, alias: str
) -> list[str]:
    """Move a registration ``alias`` (e.g. ``approved``) to one version of a registered
    model, taking it off whichever version had it; returns that version's aliases afterwards.
    The serving aliases (``production``, ``previous-production``) are refused: they follow
    the endpoint and move with ``medprune deploy`` / ``promote`` / ``rollback``."""
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform

    if cfg.vertex is None:
        raise ConfigError("promotion needs the 'vertex' section in the config")
    try:
        check_registration_alias(alias)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
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
