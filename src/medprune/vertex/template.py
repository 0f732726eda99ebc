"""What a compiled pipeline template is bound to: its component image and the settings that
shape its graph, recorded in the template and checked when a run or schedule uses it.

A kfp template is compiled from one config, but its ``config_json`` parameter can carry
another at run time. Anything the compiler read from the config (the registry target picks
the register task, ``recover.custom_job`` adds a launcher and fixes its worker pools, the
image and per-stage resources are frozen into every task) would silently stay as compiled.
So the compiler records those settings (:func:`graph_settings`) in the pipeline's
description (:func:`describe`), and ``submit --template`` / ``schedule`` call
:func:`check_template_matches`, which refuses a config that would have compiled to another
graph and names the fields.

Any medprune pipeline (``pipelines/*.py``) builds its description with :func:`describe` and
its image with :func:`component_image`; no kfp import here.

    image = component_image(cfg)                # pipeline.base_image, or the image containers/ builds
    description = describe("Prune ...", graph_settings(cfg, image))
    check_template_matches(cfg, "pipeline.yaml")  # ConfigError naming each differing field
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from medprune import __version__
from medprune.config import RunConfig
from medprune.errors import ConfigError

IMAGE_REPOSITORY_ENV = "MEDPRUNE_IMAGE_REPOSITORY"
#: The line of a pipeline description that holds the recorded settings.
GRAPH_MARKER = "medprune-graph: "
GRAPH_FORMAT = 1

#: Images that have neither kfp nor medprune: every task would die at its first import.
_BARE_IMAGES = {
    "python",
    "ubuntu",
    "debian",
    "alpine",
    "busybox",
    "centos",
    "fedora",
    "rockylinux",
    "cuda",
    "pytorch",
    "distroless",
    "base",
    "slim",
}
_REPOSITORY = re.compile(
    r"^[a-z0-9\-]+-docker\.pkg\.dev/[a-z][a-z0-9\-:.]{4,61}/[a-z0-9][a-z0-9\-_.]*$"
)


def image_name(image: str) -> str:
    """The last path part of an image reference without tag or digest
    (``us-docker.pkg.dev/p/r/medprune-gpu:v1`` -> ``medprune-gpu``)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def check_component_image(image: str, field: str = "pipeline.base_image") -> str:
    """Refuse an image that cannot hold medprune (a bare Python/OS/CUDA base image)."""
    if not image or any(c.isspace() for c in image):
        raise ConfigError(f"{field}: {image!r} is not a container image reference")
    name = image_name(image)
    if name in _BARE_IMAGES:
        raise ConfigError(
            f"{field}: {image!r} is a bare base image without kfp and medprune, so every task "
            "would fail at its first import; use the image containers/ builds "
            "(REGION-docker.pkg.dev/PROJECT/REPO/medprune-gpu:TAG, see docs/vertex.md, "
            f"or set pipeline.image_repository / ${IMAGE_REPOSITORY_ENV})"
        )
    return image


def _needs_gpu(cfg: RunConfig) -> bool:
    return any(r.accelerator_type for r in cfg.pipeline.resources.values())


def component_image(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> str:
    """The image every component runs in on Vertex AI.

    ``pipeline.base_image`` if set; else the image ``containers/cloudbuild.yaml`` pushes
    for this version: ``IMAGE_REPOSITORY/medprune-gpu:TAG`` (``medprune-cpu`` when no stage
    asks for an accelerator), with the repository from ``pipeline.image_repository`` or
    ``$MEDPRUNE_IMAGE_REPOSITORY`` (terraform output ``image_repository``) and the tag from
    ``pipeline.image_tag`` or the medprune version. Raises ConfigError when neither names
    an image, or the image is a bare base image."""
    env = os.environ if environ is None else environ
    p = cfg.pipeline
    if p.base_image:
        return check_component_image(p.base_image)
    repo = p.image_repository or env.get(IMAGE_REPOSITORY_ENV)
    if not repo:
        raise ConfigError(
            "pipeline.base_image: no component image; set pipeline.base_image (or --image), or "
            f"pipeline.image_repository / ${IMAGE_REPOSITORY_ENV} to the Artifact Registry "
            "repository containers/cloudbuild.yaml pushes to (terraform output image_repository)"
        )
    repo = repo.rstrip("/")
    if not _REPOSITORY.match(repo):
        raise ConfigError(
            f"pipeline.image_repository: {repo!r} is not REGION-docker.pkg.dev/PROJECT/REPO"
        )
    variant = "medprune-gpu" if _needs_gpu(cfg) else "medprune-cpu"
    return check_component_image(f"{repo}/{variant}:{p.image_tag or __version__}")


def graph_settings(cfg: RunConfig, image: str) -> dict[str, Any]:
    """The settings the compiled graph depends on, by dotted field name."""
    job = cfg.recover.custom_job
    return {
        "registry.target": cfg.registry.target,
        "recover.custom_job": job.model_dump(mode="json") if job.enabled else {"enabled": False},
        "pipeline.image": image,
        "pipeline.resources": {
            k: v.model_dump(mode="json") for k, v in sorted(cfg.pipeline.resources.items())
        },
    }


#: How each kind of medprune pipeline computes its graph settings from a config and image;
#: another pipeline registers its own with :func:`register_graph_settings` and passes its
#: kind to :func:`describe`.
GRAPH_SETTINGS: dict[str, Callable[[RunConfig, str], dict[str, Any]]] = {"medprune": graph_settings}


def register_graph_settings(
    kind: str, settings: Callable[[RunConfig, str], dict[str, Any]]
) -> None:
    """Let templates of pipeline ``kind`` be described and checked with ``settings``."""
    GRAPH_SETTINGS[kind] = settings


def describe(summary: str, settings: dict[str, Any], kind: str = "medprune") -> str:
    """A pipeline description: ``summary``, then the recorded settings on one line."""
    record = {
        "format": GRAPH_FORMAT,
        "kind": kind,
        "medprune_version": __version__,
        "settings": settings,
    }
    return f"{summary}\n{GRAPH_MARKER}{json.dumps(record, sort_keys=True, separators=(',', ':'))}"


def recorded_settings(spec: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """The settings a compiled pipeline spec recorded (ConfigError if it has none)."""
    return _recorded(spec, origin)["settings"]


def _recorded(spec: Mapping[str, Any], origin: str) -> dict[str, Any]:
    description = str((spec.get("pipelineInfo") or {}).get("description") or "")
    for line in description.splitlines():
        if line.startswith(GRAPH_MARKER):
            try:
                record = json.loads(line[len(GRAPH_MARKER) :])
            except ValueError:
                break
            if record.get("format") == GRAPH_FORMAT and isinstance(record.get("settings"), dict):
                return record
            break
    raise ConfigError(
        f"{origin}: records no medprune graph settings (compiled by another tool or an older "
        "medprune); compile it again with `medprune compile`"
    )


def load_template(template_path: str | Path) -> dict[str, Any]:
    path = Path(template_path)
    if not path.is_file():
        raise ConfigError(f"{path}: compiled pipeline not found (run `medprune compile` first)")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        spec = None
    if not isinstance(spec, dict) or "root" not in spec:
        raise ConfigError(f"{path}: not a compiled KFP pipeline (no root definition)")
    return spec


def _diff(path: str, want: Any, have: Any, out: list[str]) -> None:
    if isinstance(want, dict) and isinstance(have, dict):
        if "enabled" in want and want.get("enabled") != have.get("enabled"):
            out.append(
                f"{path}.enabled: template {want.get('enabled')!r}, config {have.get('enabled')!r}"
            )
            return
        for key in sorted(set(want) | set(have)):
            _diff(f"{path}.{key}", want.get(key), have.get(key), out)
    elif want != have:
        out.append(f"{path}: template {want!r}, config {have!r}")


def check_template_matches(
    cfg: RunConfig, template_path: str | Path, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Refuse to run ``template_path`` with ``cfg`` if the config would compile to another
    graph; returns the template's settings. The image is compared only when the config
    names one (``pipeline.base_image`` or an image repository): otherwise the template's
    image is the run's."""
    record = _recorded(load_template(template_path), str(template_path))
    recorded = record["settings"]
    kind = record.get("kind", "medprune")
    if kind not in GRAPH_SETTINGS:
        raise ConfigError(
            f"{template_path}: a {kind!r} pipeline, which this medprune does not know"
        )
    try:
        image = component_image(cfg, environ)
    except ConfigError:
        image = None
    current = GRAPH_SETTINGS[kind](cfg, image or recorded.get("pipeline.image", ""))
    differences: list[str] = []
    for key in sorted(set(recorded) | set(current)):
        _diff(key, recorded.get(key), current.get(key), differences)
    if differences:
        raise ConfigError(
            f"{template_path} was compiled from a config that differs in settings that shape the "
            "pipeline (a run would silently use the template's): "
            + "; ".join(differences)
            + ". Compile the template again from this config, or run it with the config it was "
            "compiled from"
        )
    return recorded
