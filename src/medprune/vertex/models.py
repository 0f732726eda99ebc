"""Model versions in the Vertex AI Model Registry: look one up, list models by name, upload a
new version. One place for the SDK's ``aiplatform.Model`` calls that loading
(:mod:`medprune.load`), registering (:mod:`medprune.register.vertex`) and serving
(:mod:`medprune.serve.vertex_endpoint`) share; each caller turns a missing model into its own
error. ``google-cloud-aiplatform`` is imported when a call is made (it is slow to import)."""

from __future__ import annotations

from typing import Any

from medprune.errors import ModelLoadError
from medprune.io.uris import parse_vertex_model_uri
from medprune.vertex.client import aiplatform_init_for


def model_version(resource_name: str, version: str | None = None) -> Any:
    """The ``aiplatform.Model`` of ``resource_name`` at ``version`` (an id or an alias; the
    default version when None). Raises the SDK's ``NotFound`` when it is not there."""
    from google.cloud import aiplatform

    return aiplatform.Model(model_name=resource_name, version=version)


def source_version(source: str, api_endpoint: str | None = None, *, field: str) -> Any:
    """The ``aiplatform.Model`` a ``vertex://PROJECT/LOCATION/MODEL@VERSION_OR_ALIAS`` source
    names (the version an alias points to now); :class:`ModelLoadError` naming ``field`` when
    it is not there or the lookup fails."""
    from google.api_core import exceptions as gexc

    ref = parse_vertex_model_uri(source)
    aiplatform_init_for(ref.project, ref.location, api_endpoint)
    try:
        return model_version(ref.resource_name, ref.version_or_alias)
    except gexc.NotFound:
        raise ModelLoadError(
            f"{field} {source}: model version {ref.versioned_name} not found in the Vertex AI "
            "Model Registry"
        ) from None
    except gexc.GoogleAPICallError as exc:
        raise ModelLoadError(f"{field} {source}: Vertex AI lookup failed: {exc}") from exc


def models_named(display_name: str) -> list[Any]:
    """Every model in the initialised project and region whose display name is ``display_name``."""
    from google.cloud import aiplatform

    return list(aiplatform.Model.list(filter=f'display_name="{display_name}"'))


def upload_version(
    *,
    display_name: str,
    artifact_uri: str,
    parent_model: str | None,
    is_default_version: bool,
    version_aliases: list[str],
    labels: dict[str, str],
    description: str,
    serving_container: dict[str, Any],
    encryption_spec_key_name: str | None,
) -> Any:
    """Register the files at ``artifact_uri`` as a new version of ``parent_model`` (a new model
    when None), served by ``serving_container`` (the ``serving_container_*`` arguments); waits
    for it and returns the ``aiplatform.Model``."""
    from google.cloud import aiplatform

    return aiplatform.Model.upload(
        display_name=display_name,
        artifact_uri=artifact_uri,
        parent_model=parent_model,
        is_default_version=is_default_version,
        version_aliases=version_aliases,
        labels=labels,
        description=description,
        **serving_container,
        encryption_spec_key_name=encryption_spec_key_name,
        sync=True,
    )
