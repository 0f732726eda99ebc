"""Serve registered versions on Vertex AI endpoints: canary, promote, rollback, regions.

    deploy(cfg, "clinical-llama@candidate")    # canary: candidate takes 10%, the serving one 90%
    promote(cfg, "clinical-llama@candidate")   # candidate 100% + alias production; old kept at 0%
    rollback(cfg, "clinical-llama")            # traffic and alias back to the previous version

What is serving is read from the endpoint, not from aliases: the **serving** deployed model
is the earliest-deployed one that has traffic, and every later-deployed model with traffic
is a **canary**. The aliases follow the endpoint, one meaning each:

- ``production``: the version holding the stable (serving) share. Set by ``deploy`` when it
  puts the first version on an empty endpoint, by ``promote``, and by ``rollback``;
  registration never sets it (``vertex.promotion_alias`` / ``registry.aliases`` may not be
  a serving alias), so a registered-but-not-deployed version is never taken for the
  serving one;
- ``previous-production``: the version ``promote`` replaced, the target of ``rollback``;
- registration aliases (``candidate``, ...): what ``models:upload`` put on a new version.

The rules that keep an endpoint serving:

- a new version is deployed *beside* the serving one with ``serve.endpoint.canary_traffic_percent``
  of the traffic (the first version on an empty endpoint takes 100%). Vertex applies the
  traffic split of a ``deployModel`` only when the deployment succeeds, so a deployment that
  fails midway leaves the previous traffic as it was;
- ``promote`` moves all traffic to the canary first, then ``production`` to its version and
  ``previous-production`` to the serving version it replaced; if the alias move fails the
  traffic is put back. The replaced version stays deployed at 0% (instant rollback) unless
  ``undeploy_previous``;
- ``rollback`` during a canary undeploys the canary (the serving version takes 100% and
  keeps ``production``), whether or not anything was ever promoted; after a promotion it
  moves traffic and ``production`` back to ``previous-production`` (deploying it again if it
  was undeployed) and only then undeploys the version rolled back from. Nothing is ever
  undeployed while it is the only version with traffic.

Endpoints: public, or (``serve.endpoint.network``) private through Private Service Connect,
which keeps several deployed models and a traffic split. ``aiplatform.Endpoint.list`` leaves
out every endpoint with a network or PSC config (its ``cls_filter`` in the SDK's models.py)
and ``PrivateEndpoint.list`` lists only those, so both are asked. Model resources are
compared by location and model id: Vertex returns names with the project number where the
config may say the project id.

Multi-regional: with ``serve.endpoint.regions`` the config is resolved once (environment
included) and then derived per region, never resolved again; a region other than the
primary one needs its own CMEK key when the primary uses one. The version is copied (files
into each region's bucket, CMEK per region) and registered in every region that lacks it,
then deployed there, one region after another (a failure stops before the next region and
names the regions already rolled out).
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medprune.config import RunConfig, VertexConfig
from medprune.config.serve import EndpointConfig
from medprune.config.vertex import PREVIOUS_PRODUCTION_ALIAS, PRODUCTION_ALIAS, SERVING_ALIASES
from medprune.errors import ConfigError, DeployError, StorageError
from medprune.serve.refs import ModelRef, parse_model_ref
from medprune.vertex.models import model_version, models_named, upload_version

log = logging.getLogger(__name__)

PRODUCTION = PRODUCTION_ALIAS
PREVIOUS = PREVIOUS_PRODUCTION_ALIAS


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


# --- setup: resolve once, then per region ---------------------------------------------------


def _vertex(cfg: RunConfig) -> VertexConfig:
    """The vertex section resolved from the environment, once per command."""
    if cfg.vertex is None:
        raise ConfigError("deploying to Vertex AI needs the 'vertex' section in the config")
    from medprune.config import resolve_vertex

    return resolve_vertex(cfg.vertex)


def region_configs(cfg: RunConfig, v: VertexConfig, only: str | None = None) -> list[VertexConfig]:
    """One config per region of ``serve.endpoint.regions`` (``v`` alone when empty), derived
    from the resolved ``v`` without any further environment lookup. Endpoints take no
    pipeline network (``vertex.network`` is VPC peering for runs; endpoints use
    ``serve.endpoint.network``, PSC). ConfigError, before any request, when a region other
    than the primary one has no CMEK key while the primary uses one: Vertex AI requires a key
    in the resource's own region, so the primary key cannot serve there."""
    regions = cfg.serve.endpoint.regions
    out: list[VertexConfig] = []
    if not regions:
        out.append(v)
    for i, r in enumerate(regions):
        key = r.encryption_spec_key_name
        if key is None and v.encryption_spec_key_name:
            if r.location != v.location:
                raise ConfigError(
                    f"serve.endpoint.regions[{i}].encryption_spec_key_name: region "
                    f"{r.location} has no CMEK key, but the vertex section uses "
                    f"{v.encryption_spec_key_name}; Vertex AI needs a key in the resource's "
                    f"own region, so set a key in {r.location}"
                )
            key = v.encryption_spec_key_name
        out.append(
            v.model_copy(
                update={
                    "location": r.location,
                    "staging_bucket": r.staging_bucket,
                    "encryption_spec_key_name": key,
                }
            )
        )
    out = [x.model_copy(update={"network": None}) for x in out]
    if only:
        chosen = [x for x in out if x.location == only]
        if not chosen:
            configured = [x.location for x in out]
            raise DeployError(
                f"region {only!r} is not configured (serve.endpoint.regions: {configured})"
            )
        return chosen
    return out


def _init(v: VertexConfig) -> VertexConfig:
    """Point the SDK at one region's config as it is (no second resolution)."""
    from medprune.vertex.client import init_resolved

    return init_resolved(v)


def _api_errors():
    from google.api_core import exceptions as gexc

    return gexc


_MODEL_NAME = re.compile(r"^projects/[^/]+/locations/([^/]+)/models/([^/@]+)")


def model_key(resource_name: str) -> tuple[str, str]:
    """``(location, model id)`` of a model resource name: the same model whether its name
    carries the project id (as configured) or the project number (as Vertex returns it)."""
    m = _MODEL_NAME.match(resource_name or "")
    if not m:
        return ("", resource_name)
    return (m.group(1), m.group(2))


# --- models --------------------------------------------------------------------------------


def find_model(v: VertexConfig, name: str) -> str | None:
    """Resource name of the model ``name`` in ``v.location`` (``vertex.parent_model`` when it
    is in that region, else by display name), or None."""
    if (
        v.parent_model
        and v.parent_model.startswith("projects/")
        and f"/locations/{v.location}/" in v.parent_model
    ):
        return v.parent_model
    found = models_named(name)
    if len(found) > 1:
        raise DeployError(
            f"{len(found)} models are named {name!r} in {v.location}; set vertex.parent_model: "
            + ", ".join(m.resource_name for m in found)
        )
    return found[0].resource_name if found else None


def resolve_version(v: VertexConfig, ref: ModelRef) -> Any:
    """The ``aiplatform.Model`` of ``ref`` in ``v.location``; DeployError naming the region
    and what to do when the model or the version/alias is not there."""
    gexc = _api_errors()
    resource = find_model(v, ref.name)
    if resource is None:
        raise DeployError(
            f"model {ref.name!r} is not registered in region {v.location}; register it there "
            f"first, or list {v.location} under serve.endpoint.regions so `medprune deploy` copies "
            "the version into that region"
        )
    try:
        return model_version(resource, ref.version_or_alias)
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
    gexc = _api_errors()
    try:
        return model_version(model_resource, alias).version_id
    except gexc.NotFound:
        return None


# --- endpoints -----------------------------------------------------------------------------


def endpoint_display_name(cfg: RunConfig) -> str:
    return cfg.serve.endpoint.display_name or f"{cfg.model.name}-endpoint"


def _is_private(endpoint: Any) -> bool:
    return bool(endpoint.network) or bool(endpoint.private_service_connect_config)


def find_endpoint(display_name: str, e: EndpointConfig | None = None) -> Any | None:
    """The endpoint named ``display_name`` in the SDK's region, public or private.

    ``aiplatform.Endpoint.list`` drops endpoints with a network or PSC config and
    ``aiplatform.PrivateEndpoint.list`` keeps only those (google/cloud/aiplatform/models.py,
    their ``cls_filter``), so a private endpoint is found only by the second: both are asked.
    With ``e``, an endpoint of the other kind than ``serve.endpoint.network`` asks for is an
    error naming the field, and a VPC-peered one (no traffic split, so no canary) too."""
    from google.cloud import aiplatform

    flt = f'display_name="{display_name}"'
    found = [*aiplatform.Endpoint.list(filter=flt), *aiplatform.PrivateEndpoint.list(filter=flt)]
    if len(found) > 1:
        raise DeployError(
            f"{len(found)} endpoints are named {display_name!r}; set serve.endpoint.display_name: "
            + ", ".join(f.resource_name for f in found)
        )
    if not found:
        return None
    ep = found[0]
    if ep.network:
        raise DeployError(
            f"endpoint {ep.resource_name} is a VPC-peered private endpoint ({ep.network}), which "
            "holds one model and no traffic split, so no canary; medprune serves through public "
            "or Private Service Connect endpoints (serve.endpoint.network): use another "
            "serve.endpoint.display_name"
        )
    private = _is_private(ep)
    if e is not None and private != bool(e.network):
        kind = "a Private Service Connect" if private else "a public"
        raise DeployError(
            f"endpoint {ep.resource_name} is {kind} endpoint but serve.endpoint.network is "
            f"{e.network!r}; set serve.endpoint.network to match it, or use another "
            "serve.endpoint.display_name"
        )
    return (
        aiplatform.PrivateEndpoint(ep.resource_name)
        if private
        else aiplatform.Endpoint(ep.resource_name)
    )


def get_or_create_endpoint(
    v: VertexConfig, e: EndpointConfig, display_name: str, labels: dict[str, str]
) -> Any:
    """The endpoint named ``display_name`` in ``v.location``, created (CMEK, private network
    through Private Service Connect) when missing."""
    from google.cloud import aiplatform

    existing = find_endpoint(display_name, e)
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
        return aiplatform.PrivateEndpoint(created.resource_name)
    created = aiplatform.Endpoint.create(
        display_name=display_name,
        labels=labels,
        encryption_spec_key_name=v.encryption_spec_key_name,
        sync=True,
    )
    return aiplatform.Endpoint(created.resource_name)


@dataclass(frozen=True)
class Deployed:
    """One deployed model of an endpoint."""

    id: str
    model: str
    version_id: str
    traffic: int
    created: datetime

    def is_version(self, model_resource: str, version_id: str) -> bool:
        return model_key(self.model) == model_key(model_resource) and self.version_id == version_id


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def deployed_models(endpoint: Any) -> list[Deployed]:
    """The endpoint's deployed models, earliest deployed first."""
    traffic = _traffic(endpoint)
    out = [
        Deployed(
            d.id,
            d.model,
            d.model_version_id,
            traffic.get(d.id, 0),
            d.create_time if d.create_time else _EPOCH,
        )
        for d in endpoint.gca_resource.deployed_models
    ]
    return sorted(out, key=lambda d: (d.created, d.id))


def serving_model(deployed: list[Deployed]) -> Deployed | None:
    """The deployed model holding the stable share: the earliest deployed with traffic."""
    return next((d for d in deployed if d.traffic > 0), None)


def canary_models(deployed: list[Deployed]) -> list[Deployed]:
    """Deployed later than the serving one and taking traffic beside it."""
    serving = serving_model(deployed)
    return [d for d in deployed if d.traffic > 0 and d is not serving]


def _find(deployed: list[Deployed], model_resource: str, version_id: str) -> Deployed | None:
    return next((d for d in deployed if d.is_version(model_resource, version_id)), None)


def _traffic(endpoint: Any) -> dict[str, int]:
    return {k: int(v) for k, v in dict(endpoint.gca_resource.traffic_split).items() if int(v) > 0}


def _refresh(endpoint: Any) -> Any:
    return type(endpoint)(endpoint.resource_name)


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


def _deploy_kwargs(e: EndpointConfig) -> dict[str, Any]:
    return {
        "machine_type": e.machine_type,
        "min_replica_count": e.min_replica_count,
        "max_replica_count": e.max_replica_count,
        "accelerator_type": e.accelerator_type,
        "accelerator_count": e.accelerator_count if e.accelerator_type else None,
        "service_account": e.service_account,
        "sync": True,
    }


_TP_ARG = re.compile(r"^--tensor-parallel-size[= ](\d+)$")


def check_tensor_parallel(model: Any, e: EndpointConfig) -> None:
    """A version registered for N GPUs per replica (``--tensor-parallel-size=N`` in its
    serving args) deployed on machines with another count would fail to start or waste
    GPUs: refused, naming serve.endpoint.accelerator_count."""
    from medprune.register.vertex import tensor_parallel_size

    spec = getattr(model.gca_resource, "container_spec", None)
    for arg in list(spec.args) if spec is not None else []:
        m = _TP_ARG.match(arg)
        if m and int(m.group(1)) != tensor_parallel_size(e):
            raise DeployError(
                f"{model.resource_name}@{model.version_id} was registered with {arg} but "
                f"serve.endpoint has {tensor_parallel_size(e)} accelerator(s) per replica "
                f"(accelerator_type {e.accelerator_type}, accelerator_count "
                f"{e.accelerator_count}); set serve.endpoint.accelerator_count to {m.group(1)} "
                "or register the version again"
            )


# --- deploy / promote / rollback (one region) ----------------------------------------------


def deploy_in_region(
    cfg: RunConfig, ref: ModelRef, v: VertexConfig, *, copied_from: str | None = None
) -> RegionResult:
    e = cfg.serve.endpoint
    gexc = _api_errors()
    model = resolve_version(v, ref)
    check_tensor_parallel(model, e)
    labels = {"medprune": "true", **(cfg.vertex.labels if cfg.vertex else {})}
    endpoint = get_or_create_endpoint(v, e, endpoint_display_name(cfg), labels)
    deployed = deployed_models(endpoint)
    before = _traffic(endpoint)
    same = _find(deployed, model.resource_name, model.version_id)
    if same is not None:
        raise DeployError(
            f"{ref} (version {model.version_id}) is already deployed on {endpoint.resource_name} as "
            f"{same.id} with {same.traffic}% of the traffic; promote or roll it back"
        )
    first = not before
    if first:
        split = {"0": 100}
        action = "first version (100%)"
    else:
        split = _canary_split(before, e.canary_traffic_percent)
        action = f"canary {e.canary_traffic_percent}%"
    try:
        endpoint.deploy(
            model=model,
            deployed_model_display_name=f"{ref.name}-v{model.version_id}",
            traffic_split=split,
            **_deploy_kwargs(e),
        )
    except (gexc.GoogleAPICallError, RuntimeError, ValueError) as exc:
        after = _traffic(_refresh(endpoint))
        raise DeployError(
            f"deploying {ref} (version {model.version_id}) to {endpoint.resource_name} failed; the "
            f"endpoint's traffic is unchanged ({after}): {exc}"
        ) from exc
    endpoint = _refresh(endpoint)
    new = _find(deployed_models(endpoint), model.resource_name, model.version_id)
    if first:
        # the version that now holds the stable share is `production`
        try:
            _move_alias(model.resource_name, model.version_id, PRODUCTION)
        except gexc.GoogleAPICallError as exc:
            raise DeployError(
                f"{ref} (version {model.version_id}) serves 100% on {endpoint.resource_name}, "
                f"but moving alias {PRODUCTION!r} to it failed: {exc}; run `medprune promote "
                f"{ref.name}@{model.version_id}` to set it"
            ) from exc
    return RegionResult(
        v.location,
        endpoint.resource_name,
        model.resource_name,
        model.version_id,
        new.id if new else None,
        _traffic(endpoint),
        action,
        copied_from,
    )


def promote_in_region(
    cfg: RunConfig, ref: ModelRef, v: VertexConfig, *, undeploy_previous: bool = False
) -> RegionResult:
    gexc = _api_errors()
    model = resolve_version(v, ref)
    endpoint = find_endpoint(endpoint_display_name(cfg), cfg.serve.endpoint)
    if endpoint is None:
        raise DeployError(
            f"no endpoint {endpoint_display_name(cfg)!r} in {v.location}; deploy {ref} first"
        )
    deployed = deployed_models(endpoint)
    target = _find(deployed, model.resource_name, model.version_id)
    if target is None:
        raise DeployError(
            f"{ref} (version {model.version_id}) is not deployed on {endpoint.resource_name}; "
            f"run `medprune deploy {ref} --target vertex` first"
        )
    before = _traffic(endpoint)
    serving = serving_model(deployed)
    # the version it replaces is what served, read from the endpoint (not from an alias)
    replaced = (
        serving.version_id
        if serving is not None
        and serving.id != target.id
        and model_key(serving.model) == model_key(model.resource_name)
        else None
    )
    try:
        endpoint.update(traffic_split={target.id: 100})
    except gexc.GoogleAPICallError as exc:
        raise DeployError(
            f"moving all traffic to {ref} failed; traffic unchanged ({before}): {exc}"
        ) from exc
    try:
        if replaced:
            _move_alias(model.resource_name, replaced, PREVIOUS)
        _move_alias(model.resource_name, model.version_id, PRODUCTION)
    except gexc.GoogleAPICallError as exc:
        _refresh(endpoint).update(traffic_split=before)
        raise DeployError(
            f"moving alias {PRODUCTION!r} to {ref} failed, so the traffic was put back ({before}): {exc}"
        ) from exc
    endpoint = _refresh(endpoint)
    if undeploy_previous:
        for d in deployed_models(endpoint):
            if d.id != target.id:
                endpoint.undeploy(deployed_model_id=d.id, sync=True)
        endpoint = _refresh(endpoint)
    return RegionResult(
        v.location,
        endpoint.resource_name,
        model.resource_name,
        model.version_id,
        target.id,
        _traffic(endpoint),
        f"promoted (previous production: {replaced or 'none'})",
    )


def rollback_in_region(cfg: RunConfig, name: str, v: VertexConfig) -> RegionResult:

    e = cfg.serve.endpoint
    endpoint = find_endpoint(endpoint_display_name(cfg), e)
    if endpoint is None:
        raise DeployError(
            f"no endpoint {endpoint_display_name(cfg)!r} in {v.location}; nothing to roll back"
        )
    model_resource = find_model(v, name)
    if model_resource is None:
        raise DeployError(f"model {name!r} is not registered in {v.location}; nothing to roll back")
    deployed = deployed_models(endpoint)
    serving = serving_model(deployed)
    canaries = canary_models(deployed)

    # 1) a canary beside the serving version: undeploy the canary, the serving one takes all
    if serving is not None and canaries:
        traffic = _traffic(endpoint)
        for c in canaries:
            split = {k: p for k, p in traffic.items() if k != c.id}
            split[serving.id] = split.get(serving.id, 0) + traffic.get(c.id, 0)
            endpoint.undeploy(deployed_model_id=c.id, traffic_split=split, sync=True)
            endpoint = _refresh(endpoint)
            traffic = _traffic(endpoint)
        if (
            model_key(serving.model) == model_key(model_resource)
            and _alias_version(model_resource, PRODUCTION) != serving.version_id
        ):
            _move_alias(model_resource, serving.version_id, PRODUCTION)
        return RegionResult(
            v.location,
            endpoint.resource_name,
            model_resource,
            serving.version_id,
            serving.id,
            _traffic(endpoint),
            f"canary rolled back (undeployed {', '.join(c.id for c in canaries)})",
        )

    # 2) after a promotion: back to previous-production
    previous = _alias_version(model_resource, PREVIOUS)
    current = serving.version_id if serving is not None else None
    if previous is None or previous == current:
        raise DeployError(
            f"model {name!r} has no {PREVIOUS!r} version in {v.location} and no canary is deployed on "
            f"{endpoint.resource_name}; there is no previous version to roll back to"
        )
    prev = _find(deployed, model_resource, previous)
    if prev is None:  # undeployed at promotion: deploy it again, taking all traffic at once
        model = model_version(model_resource, previous)
        endpoint.deploy(
            model=model,
            deployed_model_display_name=f"{name}-v{previous}",
            traffic_split={"0": 100},
            **_deploy_kwargs(e),
        )
        endpoint = _refresh(endpoint)
        prev = _find(deployed_models(endpoint), model_resource, previous)
        assert prev is not None, f"version {previous} missing after its deployment"
    else:
        endpoint.update(traffic_split={prev.id: 100})
        endpoint = _refresh(endpoint)
    _move_alias(model_resource, previous, PRODUCTION)
    _remove_alias(model_resource, previous, PREVIOUS)
    for d in deployed_models(endpoint):
        if d.id != prev.id:
            endpoint.undeploy(deployed_model_id=d.id, sync=True)
    endpoint = _refresh(endpoint)
    return RegionResult(
        v.location,
        endpoint.resource_name,
        model_resource,
        previous,
        prev.id,
        _traffic(endpoint),
        f"rolled back to version {previous} (from {current})",
    )


# --- regions -------------------------------------------------------------------------------


def copy_version_to_region(
    cfg: RunConfig, ref: ModelRef, source: VertexConfig, target: VertexConfig
) -> str:
    """Register ``ref`` (from ``source``'s region) in ``target``'s region, with the files
    copied into the target bucket and the target CMEK, unless a copy is already there.
    Serving aliases are not copied (``deploy`` sets ``production`` where the copy serves).
    Returns the versioned resource name in the target region."""

    from medprune.io.gcs import download_dir, upload_dir
    from medprune.register.vertex import label_value, serving_container

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
    assert target.staging_bucket is not None
    artifact_uri = f"{target.staging_bucket}/models/{ref.name}/{src_tag}"
    try:
        with tempfile.TemporaryDirectory(prefix="medprune-region-copy-") as work:
            local = download_dir(src_uri, Path(work) / "model")
            upload_dir(local, artifact_uri, max_workers=target.upload_workers)
    except StorageError as exc:
        raise DeployError(
            f"copying {src_uri} to {artifact_uri} for region {target.location} failed: {exc}"
        ) from exc
    alias = ref.version_or_alias
    aliases = [] if alias.isdigit() or alias in SERVING_ALIASES else [alias]
    labels = {**dict(model.labels or {}), "medprune-source": src_tag}
    copy = upload_version(
        display_name=ref.name,
        artifact_uri=artifact_uri,
        parent_model=parent,
        is_default_version=parent is None,
        version_aliases=aliases,
        labels=labels,
        description=(model.description or "")[:900] + f" Copied from {source.location}.",
        serving_container=serving_container(target, cfg.serve.endpoint, artifact_uri),
        encryption_spec_key_name=target.encryption_spec_key_name,
    )
    return f"{copy.resource_name}@{copy.version_id}"


def _find_copy(parent: str | None, tag: str) -> str | None:
    """The version of ``parent`` labelled ``medprune-source=tag`` (a regional copy), or None."""
    from google.cloud import aiplatform

    if parent is None:
        return None
    for info in aiplatform.models.ModelRegistry(parent).list_versions():
        version = model_version(parent, info.version_id)
        if (version.labels or {}).get("medprune-source") == tag:
            return version.version_id
    return None


def _source(v: VertexConfig) -> VertexConfig:
    """The primary region's config, from which versions are copied."""
    return v.model_copy(update={"network": None})


def deploy(cfg: RunConfig, model_ref: str, *, region: str | None = None) -> list[RegionResult]:
    """Deploy ``NAME@ALIAS`` as a canary in every configured region (copying it into regions
    that lack it), or only in ``region``."""
    ref = parse_model_ref(model_ref)
    v = _vertex(cfg)
    results: list[RegionResult] = []
    for target in region_configs(cfg, v, region):
        copied = None
        if target.location != v.location:
            copied = copy_version_to_region(cfg, ref, _source(v), target)
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
    for target in region_configs(cfg, v, region):
        ref_here = ref
        if target.location != v.location:
            ref_here = _copied_ref(cfg, ref, _source(v), target)
        _init(target)
        out.append(promote_in_region(cfg, ref_here, target, undeploy_previous=undeploy_previous))
    return out


def rollback(cfg: RunConfig, model_name: str, *, region: str | None = None) -> list[RegionResult]:
    name = model_name.split("@", 1)[0]
    v = _vertex(cfg)
    return [rollback_in_region(cfg, name, _init(t)) for t in region_configs(cfg, v, region)]


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
