"""Serve registered versions on Vertex AI endpoints: canary, promote, rollback, regions.

    deploy(cfg, "clinical-llama@candidate")    # canary: candidate takes 10%, production 90%
    promote(cfg, "clinical-llama@candidate")   # candidate 100% + alias production; old kept at 0%
    rollback(cfg, "clinical-llama")            # traffic and alias back to the previous version

The rules that keep an endpoint serving:

- a new version is deployed *beside* the serving one with ``serve.endpoint.canary_traffic_percent``
  of the traffic (the first version on an empty endpoint takes 100%). Vertex applies the
  traffic split of a ``deployModel`` only when the deployment succeeds, so a deployment that
  fails midway leaves the previous traffic as it was;
- ``promote`` moves all traffic to the canary first, then the ``production`` alias to its
  version and ``previous-production`` to the version it replaced; if the alias move fails
  the traffic is put back. The replaced version stays deployed at 0% (instant rollback)
  unless ``undeploy_previous``;
- ``rollback`` during a canary undeploys the canary (production takes 100%); after a
  promotion it moves traffic and ``production`` back to ``previous-production`` (deploying
  it again if it was undeployed) and only then undeploys the version rolled back from.
  Nothing is ever undeployed while it is the only version with traffic.

Multi-regional: with ``serve.endpoint.regions`` the version is copied (files into each
region's bucket, CMEK per region) and registered in every region that lacks it, then
deployed there, one region after another (a failure stops before the next region and names
the regions already rolled out).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medprune.config import RunConfig, VertexConfig
from medprune.config.serve import EndpointConfig, RegionConfig
from medprune.errors import ConfigError, DeployError, StorageError
from medprune.serve.refs import ModelRef, parse_model_ref

log = logging.getLogger(__name__)

PRODUCTION = "production"
PREVIOUS = "previous-production"


@dataclass
class RegionResult:
    location: str
    endpoint: str
    model: str
    version_id: str
    deployed_model_id: str | None
    traffic: dict[str, int]
    action: str
    copied_from: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- setup ---------------------------------------------------------------------------------


def _vertex(cfg: RunConfig) -> VertexConfig:
    if cfg.vertex is None:
        raise ConfigError("deploying to Vertex AI needs the 'vertex' section in the config")
    from medprune.config import resolve_vertex

    return resolve_vertex(cfg.vertex)


def _regional(v: VertexConfig, region: RegionConfig | None) -> VertexConfig:
    if region is None:
        return v
    return v.model_copy(
        update={
            "location": region.location,
            "staging_bucket": region.staging_bucket,
            "encryption_spec_key_name": region.encryption_spec_key_name,
        }
    )


def _init(v: VertexConfig) -> VertexConfig:
    from medprune.vertex.client import aiplatform_init

    # the pipeline network is for pipeline runs; endpoints take serve.endpoint.network
    return aiplatform_init(v.model_copy(update={"network": None}))


def _api_errors():
    from google.api_core import exceptions as gexc

    return gexc


# --- models --------------------------------------------------------------------------------


def find_model(v: VertexConfig, name: str) -> str | None:
    """Resource name of the model ``name`` in ``v.location`` (``vertex.parent_model`` when it
    is in that region, else by display name), or None."""
    from google.cloud import aiplatform

    if (
        v.parent_model
        and v.parent_model.startswith("projects/")
        and f"/locations/{v.location}/" in v.parent_model
    ):
        return v.parent_model
    found = aiplatform.Model.list(filter=f'display_name="{name}"')
    if len(found) > 1:
        raise DeployError(
            f"{len(found)} models are named {name!r} in {v.location}; set vertex.parent_model: "
            + ", ".join(m.resource_name for m in found)
        )
    return found[0].resource_name if found else None


def resolve_version(v: VertexConfig, ref: ModelRef) -> Any:
    """The ``aiplatform.Model`` of ``ref`` in ``v.location``; DeployError naming the region
    and what to do when the model or the version/alias is not there."""
    from google.cloud import aiplatform

    gexc = _api_errors()
    resource = find_model(v, ref.name)
    if resource is None:
        raise DeployError(
            f"model {ref.name!r} is not registered in region {v.location}; register it there "
            f"first, or list {v.location} under serve.endpoint.regions so `medprune deploy` copies "
            "the version into that region"
        )
    try:
        return aiplatform.Model(model_name=resource, version=ref.version_or_alias)
    except gexc.NotFound:
        raise DeployError(
            f"model {ref.name!r} has no version or alias {ref.version_or_alias!r} in region "
            f"{v.location} ({resource}); list versions in the Model Registry"
        ) from None


def _move_alias(model_resource: str, version_id: str, alias: str) -> None:
    from google.cloud import aiplatform

    aiplatform.models.ModelRegistry(model_resource).add_version_aliases([alias], version=version_id)


def _remove_alias(model_resource: str, version_id: str, alias: str) -> None:
    from google.cloud import aiplatform

    aiplatform.models.ModelRegistry(model_resource).remove_version_aliases(
        [alias], version=version_id
    )


def _alias_version(model_resource: str, alias: str) -> str | None:
    from google.cloud import aiplatform

    gexc = _api_errors()
    try:
        return aiplatform.Model(model_name=model_resource, version=alias).version_id
    except gexc.NotFound:
        return None


# --- endpoints -----------------------------------------------------------------------------


def endpoint_display_name(cfg: RunConfig) -> str:
    return cfg.serve.endpoint.display_name or f"{cfg.model.name}-endpoint"


def find_endpoint(display_name: str) -> Any | None:
    from google.cloud import aiplatform

    found = aiplatform.Endpoint.list(filter=f'display_name="{display_name}"')
    if len(found) > 1:
        raise DeployError(
            f"{len(found)} endpoints are named {display_name!r}; set serve.endpoint.display_name"
        )
    return aiplatform.Endpoint(found[0].resource_name) if found else None


def get_or_create_endpoint(
    v: VertexConfig, e: EndpointConfig, display_name: str, labels: dict[str, str]
) -> Any:
    """The endpoint named ``display_name`` in ``v.location``, created (CMEK, private network
    through Private Service Connect) when missing."""
    from google.cloud import aiplatform

    existing = find_endpoint(display_name)
    if existing is not None:
        return existing
    if e.network:
        # A private endpoint reached through Private Service Connect from e.network: unlike a
        # peered private endpoint it keeps several deployed models and a traffic split, which
        # the canary needs. The SDK's wrapper has no field for the consumer network, so the
        # automation config is set on its proto.
        psc = aiplatform.PrivateEndpoint.PrivateServiceConnectConfig(project_allowlist=[v.project])
        psc._gapic_private_service_connect_config.psc_automation_configs = [
            {"project_id": v.project, "network": e.network}
        ]
        created = aiplatform.PrivateEndpoint.create(
            display_name=display_name,
            labels=labels,
            encryption_spec_key_name=v.encryption_spec_key_name,
            private_service_connect_config=psc,
            sync=True,
        )
    else:
        created = aiplatform.Endpoint.create(
            display_name=display_name,
            labels=labels,
            encryption_spec_key_name=v.encryption_spec_key_name,
            sync=True,
        )
    return aiplatform.Endpoint(created.resource_name)


def _deployed(endpoint: Any) -> dict[str, tuple[str, str]]:
    """``{deployed_model_id: (model resource name, version id)}``."""
    return {d.id: (d.model, d.model_version_id) for d in endpoint.gca_resource.deployed_models}


def _traffic(endpoint: Any) -> dict[str, int]:
    return {k: int(v) for k, v in dict(endpoint.gca_resource.traffic_split).items() if int(v) > 0}


def _refresh(endpoint: Any) -> Any:
    from google.cloud import aiplatform

    return aiplatform.Endpoint(endpoint.resource_name)


def _canary_split(current: dict[str, int], percent: int) -> dict[str, int]:
    """The split after a new model ("0") takes ``percent``: the serving models keep their
    proportions of the rest, rounded so the whole is 100."""
    rest = 100 - percent
    total = sum(current.values())
    split = {"0": percent}
    if total and rest:
        shares = {k: v * rest // total for k, v in current.items()}
        shares[max(current, key=lambda k: current[k])] += rest - sum(shares.values())
        split.update({k: s for k, s in shares.items() if s > 0})
    return split


# --- deploy / promote / rollback (one region) ----------------------------------------------


def deploy_in_region(
    cfg: RunConfig, ref: ModelRef, v: VertexConfig, *, copied_from: str | None = None
) -> RegionResult:
    e = cfg.serve.endpoint
    gexc = _api_errors()
    model = resolve_version(v, ref)
    labels = {"medprune": "true", **(cfg.vertex.labels if cfg.vertex else {})}
    endpoint = get_or_create_endpoint(v, e, endpoint_display_name(cfg), labels)
    deployed = _deployed(endpoint)
    before = _traffic(endpoint)
    for dm_id, (res, version) in deployed.items():
        if res == model.resource_name and version == model.version_id:
            raise DeployError(
                f"{ref} (version {model.version_id}) is already deployed on {endpoint.resource_name} as "
                f"{dm_id} with {before.get(dm_id, 0)}% of the traffic; promote or roll it back"
            )
    if before:
        split = _canary_split(before, e.canary_traffic_percent)
        action = f"canary {e.canary_traffic_percent}%"
    else:
        split = {"0": 100}
        action = "first version (100%)"
    try:
        endpoint.deploy(
            model=model,
            deployed_model_display_name=f"{ref.name}-v{model.version_id}",
            traffic_split=split,
            machine_type=e.machine_type,
            min_replica_count=e.min_replica_count,
            max_replica_count=e.max_replica_count,
            accelerator_type=e.accelerator_type,
            accelerator_count=e.accelerator_count if e.accelerator_type else None,
            service_account=e.service_account,
            sync=True,
        )
    except (gexc.GoogleAPICallError, RuntimeError, ValueError) as exc:
        after = _traffic(_refresh(endpoint))
        raise DeployError(
            f"deploying {ref} (version {model.version_id}) to {endpoint.resource_name} failed; the "
            f"endpoint's traffic is unchanged ({after}): {exc}"
        ) from exc
    endpoint = _refresh(endpoint)
    new_id = next(
        (
            i
            for i, (res, ver) in _deployed(endpoint).items()
            if res == model.resource_name and ver == model.version_id
        ),
        None,
    )
    return RegionResult(
        v.location,
        endpoint.resource_name,
        model.resource_name,
        model.version_id,
        new_id,
        _traffic(endpoint),
        action,
        copied_from,
    )


def promote_in_region(
    cfg: RunConfig, ref: ModelRef, v: VertexConfig, *, undeploy_previous: bool = False
) -> RegionResult:
    gexc = _api_errors()
    model = resolve_version(v, ref)
    endpoint = find_endpoint(endpoint_display_name(cfg))
    if endpoint is None:
        raise DeployError(
            f"no endpoint {endpoint_display_name(cfg)!r} in {v.location}; deploy {ref} first"
        )
    deployed = _deployed(endpoint)
    target = next(
        (
            i
            for i, (res, ver) in deployed.items()
            if res == model.resource_name and ver == model.version_id
        ),
        None,
    )
    if target is None:
        raise DeployError(
            f"{ref} (version {model.version_id}) is not deployed on {endpoint.resource_name}; "
            f"run `medprune deploy {ref} --target vertex` first"
        )
    before = _traffic(endpoint)
    old_production = _alias_version(model.resource_name, PRODUCTION)
    try:
        endpoint.update(traffic_split={target: 100})
    except gexc.GoogleAPICallError as exc:
        raise DeployError(
            f"moving all traffic to {ref} failed; traffic unchanged ({before}): {exc}"
        ) from exc
    try:
        if old_production and old_production != model.version_id:
            _move_alias(model.resource_name, old_production, PREVIOUS)
        _move_alias(model.resource_name, model.version_id, PRODUCTION)
    except gexc.GoogleAPICallError as exc:
        _refresh(endpoint).update(traffic_split=before)
        raise DeployError(
            f"moving alias {PRODUCTION!r} to {ref} failed, so the traffic was put back ({before}): {exc}"
        ) from exc
    endpoint = _refresh(endpoint)
    if undeploy_previous:
        for dm_id in list(_deployed(endpoint)):
            if dm_id != target:
                endpoint.undeploy(deployed_model_id=dm_id, sync=True)
        endpoint = _refresh(endpoint)
    return RegionResult(
        v.location,
        endpoint.resource_name,
        model.resource_name,
        model.version_id,
        target,
        _traffic(endpoint),
        f"promoted (previous production: {old_production or 'none'})",
    )


def rollback_in_region(cfg: RunConfig, name: str, v: VertexConfig) -> RegionResult:
    from google.cloud import aiplatform

    e = cfg.serve.endpoint
    endpoint = find_endpoint(endpoint_display_name(cfg))
    if endpoint is None:
        raise DeployError(
            f"no endpoint {endpoint_display_name(cfg)!r} in {v.location}; nothing to roll back"
        )
    model_resource = find_model(v, name)
    if model_resource is None:
        raise DeployError(f"model {name!r} is not registered in {v.location}; nothing to roll back")
    deployed = _deployed(endpoint)
    traffic = _traffic(endpoint)
    production = _alias_version(model_resource, PRODUCTION)
    by_version = {ver: i for i, (res, ver) in deployed.items() if res == model_resource}
    prod_id = by_version.get(production) if production else None

    # 1) a canary beside production: undeploy the canary, production takes all traffic
    canaries = [i for i in deployed if i != prod_id and traffic.get(i, 0) > 0]
    if prod_id is not None and canaries and traffic.get(prod_id, 0) > 0:
        for dm_id in canaries:
            endpoint.undeploy(deployed_model_id=dm_id, traffic_split={prod_id: 100}, sync=True)
            endpoint = _refresh(endpoint)
        return RegionResult(
            v.location,
            endpoint.resource_name,
            model_resource,
            production,
            prod_id,
            _traffic(endpoint),
            f"canary rolled back (undeployed {', '.join(canaries)})",
        )

    # 2) after a promotion: back to previous-production
    previous = _alias_version(model_resource, PREVIOUS)
    if previous is None:
        raise DeployError(
            f"model {name!r} has no {PREVIOUS!r} version in {v.location} and no canary is deployed on "
            f"{endpoint.resource_name}; there is no previous version to roll back to"
        )
    prev_id = by_version.get(previous)
    if prev_id is None:  # undeployed at promotion: deploy it again, taking all traffic at once
        model = aiplatform.Model(model_name=model_resource, version=previous)
        endpoint.deploy(
            model=model,
            deployed_model_display_name=f"{name}-v{previous}",
            traffic_split={"0": 100},
            machine_type=e.machine_type,
            min_replica_count=e.min_replica_count,
            max_replica_count=e.max_replica_count,
            accelerator_type=e.accelerator_type,
            accelerator_count=e.accelerator_count if e.accelerator_type else None,
            service_account=e.service_account,
            sync=True,
        )
        endpoint = _refresh(endpoint)
        prev_id = next(
            i
            for i, (res, ver) in _deployed(endpoint).items()
            if res == model_resource and ver == previous
        )
    else:
        endpoint.update(traffic_split={prev_id: 100})
        endpoint = _refresh(endpoint)
    _move_alias(model_resource, previous, PRODUCTION)
    _remove_alias(model_resource, previous, PREVIOUS)
    for dm_id in list(_deployed(endpoint)):
        if dm_id != prev_id:
            endpoint.undeploy(deployed_model_id=dm_id, sync=True)
    endpoint = _refresh(endpoint)
    return RegionResult(
        v.location,
        endpoint.resource_name,
        model_resource,
        previous,
        prev_id,
        _traffic(endpoint),
        f"rolled back to version {previous} (from {production})",
    )


# --- regions -------------------------------------------------------------------------------


def _regions(cfg: RunConfig, v: VertexConfig, only: str | None) -> list[RegionConfig | None]:
    regions: list[RegionConfig | None] = list(cfg.serve.endpoint.regions) or [None]
    if only:
        regions = [r for r in regions if (r.location if r else v.location) == only]
        if not regions:
            configured = [r.location for r in cfg.serve.endpoint.regions] or [v.location]
            raise DeployError(
                f"region {only!r} is not configured (serve.endpoint.regions: {configured})"
            )
    return regions


def copy_version_to_region(
    cfg: RunConfig, ref: ModelRef, source: VertexConfig, target: VertexConfig
) -> str:
    """Register ``ref`` (from ``source``'s region) in ``target``'s region, with the files
    copied into the target bucket and the target CMEK, unless a copy is already there.
    Returns the versioned resource name in the target region."""
    from google.cloud import aiplatform

    from medprune.io.gcs import download_dir, upload_dir
    from medprune.register.vertex import label_value

    _init(source)
    model = resolve_version(source, ref)
    src_tag = label_value(f"{source.location}-{model.name}-{model.version_id}")
    src_uri = model.uri
    if not src_uri or not src_uri.startswith("gs://"):
        raise DeployError(
            f"{ref} in {source.location} has no gs:// artifact URI ({src_uri!r}); cannot copy it"
        )
    _init(target)
    parent = find_model(target, ref.name)
    found = _find_copy(parent, src_tag)
    if found is not None:
        return f"{parent}@{found}"
    artifact_uri = f"{target.staging_bucket}/models/{ref.name}/{src_tag}"
    try:
        with tempfile.TemporaryDirectory(prefix="medprune-region-copy-") as work:
            local = download_dir(src_uri, Path(work) / "model")
            upload_dir(local, artifact_uri, max_workers=target.upload_workers)
    except StorageError as exc:
        raise DeployError(
            f"copying {src_uri} to {artifact_uri} for region {target.location} failed: {exc}"
        ) from exc
    aliases = [] if ref.version_or_alias.isdigit() else [ref.version_or_alias]
    labels = {**dict(model.labels or {}), "medprune-source": src_tag}
    copy = aiplatform.Model.upload(
        display_name=ref.name,
        artifact_uri=artifact_uri,
        parent_model=parent,
        is_default_version=parent is None,
        version_aliases=aliases,
        labels=labels,
        description=(model.description or "")[:900] + f" Copied from {source.location}.",
        serving_container_image_uri=target.serving_container_image_uri,
        serving_container_args=[
            a.replace("{artifact_uri}", artifact_uri) for a in target.serving_container_args
        ],
        serving_container_predict_route=target.serving_container_predict_route,
        serving_container_health_route=target.serving_container_health_route,
        serving_container_ports=target.serving_container_ports,
        encryption_spec_key_name=target.encryption_spec_key_name,
        sync=True,
    )
    return f"{copy.resource_name}@{copy.version_id}"


def _find_copy(parent: str | None, tag: str) -> str | None:
    """The version of ``parent`` labelled ``medprune-source=tag`` (a regional copy), or None."""
    from google.cloud import aiplatform

    if parent is None:
        return None
    for info in aiplatform.models.ModelRegistry(parent).list_versions():
        version = aiplatform.Model(model_name=parent, version=info.version_id)
        if (version.labels or {}).get("medprune-source") == tag:
            return version.version_id
    return None


def deploy(cfg: RunConfig, model_ref: str, *, region: str | None = None) -> list[RegionResult]:
    """Deploy ``NAME@ALIAS`` as a canary in every configured region (copying it into regions
    that lack it), or only in ``region``."""
    ref = parse_model_ref(model_ref)
    v = _vertex(cfg)
    results = []
    for r in _regions(cfg, v, region):
        target = _regional(v, r)
        copied = None
        if r is not None and r.location != v.location:
            copied = copy_version_to_region(cfg, ref, v, target)
            # the copy carries the alias in its region; deploy exactly that version
            ref_here = ModelRef(ref.name, copied.rsplit("@", 1)[1])
        else:
            ref_here = ref
        _init(target)
        try:
            res = deploy_in_region(
                cfg, ref_here, target, copied_from=v.location if copied else None
            )
        except DeployError as exc:
            done = [x.location for x in results]
            raise DeployError(f"{exc} (regions already deployed: {done or 'none'})") from exc
        results.append(res)
    return results


def promote(
    cfg: RunConfig, model_ref: str, *, region: str | None = None, undeploy_previous: bool = False
) -> list[RegionResult]:
    ref = parse_model_ref(model_ref)
    v = _vertex(cfg)
    out = []
    for r in _regions(cfg, v, region):
        target = _init(_regional(v, r))
        ref_here = ref
        if r is not None and r.location != v.location:
            ref_here = _copied_ref(cfg, ref, v, target)
        out.append(promote_in_region(cfg, ref_here, target, undeploy_previous=undeploy_previous))
    return out


def rollback(cfg: RunConfig, model_name: str, *, region: str | None = None) -> list[RegionResult]:
    name = model_name.split("@", 1)[0]
    v = _vertex(cfg)
    return [rollback_in_region(cfg, name, _init(_regional(v, r))) for r in _regions(cfg, v, region)]


def _copied_ref(
    cfg: RunConfig, ref: ModelRef, source: VertexConfig, target: VertexConfig
) -> ModelRef:
    """The version in ``target``'s region that was copied from ``ref`` in ``source``'s."""
    from medprune.register.vertex import label_value

    _init(source)
    model = resolve_version(source, ref)
    tag = label_value(f"{source.location}-{model.name}-{model.version_id}")
    _init(target)
    found = _find_copy(find_model(target, ref.name), tag)
    if found is not None:
        return ModelRef(ref.name, found)
    raise DeployError(
        f"{ref} was never copied to region {target.location}; run `medprune deploy {ref} --target vertex` first"
    )
