"""The per-environment example configs load, and agree with the Terraform naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from medprune import __version__
from medprune.config import load_config, resolve_vertex
from medprune.io.uris import parse_vertex_model_uri
from medprune.vertex.template import component_image

ROOT = Path(__file__).resolve().parents[2]


def _terraform_env(monkeypatch, env: str, project: str) -> None:
    """What `terraform output -json medprune_env` gives for PROJECT (infra/modules/medprune)."""
    values = {
        "GOOGLE_CLOUD_PROJECT": project,
        "GOOGLE_CLOUD_REGION": "europe-west4",
        "MEDPRUNE_BUCKET": f"medprune-{env}-{project}",
        "MEDPRUNE_SERVICE_ACCOUNT": f"medprune-{env}-pipeline@{project}.iam.gserviceaccount.com",
        "MEDPRUNE_IMAGE_REPOSITORY": f"europe-west4-docker.pkg.dev/{project}/medprune-{env}",
        "MEDPRUNE_TEMPLATE_REPOSITORY": f"https://europe-west4-kfp.pkg.dev/{project}/medprune-{env}-pipelines",
        "MEDPRUNE_KMS_KEY": f"projects/{project}/locations/europe-west4/keyRings/medprune-{env}/cryptoKeys/medprune-{env}-key",
        "MEDPRUNE_NETWORK": "projects/123456789012/global/networks/clinical-vpc",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MEDPRUNE_VERTEX_API_ENDPOINT", raising=False)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_example_takes_every_project_value_from_terraform_outputs(env, monkeypatch) -> None:
    project = "a-new-project-42"  # no name in the example may be tied to one project
    _terraform_env(monkeypatch, env, project)
    text = (ROOT / "examples" / f"{env}.yaml").read_text()
    assert (
        f"medprune-{env}-pipeline@" not in text
        and "gs://" not in text
        and "docker.pkg.dev" not in text
    )
    cfg = load_config(ROOT / "examples" / f"{env}.yaml")
    assert cfg.registry.target == "vertex"
    v = resolve_vertex(cfg.vertex)
    assert v.project == project and v.location == "europe-west4"
    assert v.staging_bucket == f"gs://medprune-{env}-{project}"
    assert v.pipeline_root == f"gs://medprune-{env}-{project}/pipeline_root"
    assert v.service_account == f"medprune-{env}-pipeline@{project}.iam.gserviceaccount.com"
    assert (
        v.template_repository
        == f"https://europe-west4-kfp.pkg.dev/{project}/medprune-{env}-pipelines"
    )
    assert cfg.model.source.startswith(
        f"vertex://projects/{project}/locations/europe-west4/models/"
    )
    assert cfg.evaluate.mcq == f"/gcs/medprune-{env}-{project}/data/mcq.jsonl"
    parse_vertex_model_uri(cfg.model.source)
    assert v.api_endpoint is None
    assert (
        component_image(cfg)
        == f"europe-west4-docker.pkg.dev/{project}/medprune-{env}/medprune-gpu:{__version__}"
    )


def test_prod_is_locked_down(monkeypatch) -> None:
    _terraform_env(monkeypatch, "prod", "clinical-prod-1")
    cfg = load_config(ROOT / "examples" / "prod.yaml")
    v = resolve_vertex(cfg.vertex)
    assert v.encryption_spec_key_name and v.network
    assert v.enable_caching is False
    assert not component_image(cfg).endswith(":latest")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_registration_puts_no_serving_alias_on_an_undeployed_version(env, monkeypatch) -> None:
    """Issue 25, item 2: `production` is the version holding the endpoint's stable traffic
    (moved by deploy / promote / rollback); registration only adds registration aliases."""
    from medprune.config.vertex import SERVING_ALIASES

    _terraform_env(monkeypatch, env, "clinical-1")
    cfg = load_config(ROOT / "examples" / f"{env}.yaml")
    registered = [*cfg.registry.aliases, *([cfg.vertex.promotion_alias] if cfg.vertex else [])]
    assert not set(registered) & set(SERVING_ALIASES), registered
    assert cfg.registry.aliases == ["candidate"]


def test_example_without_terraform_outputs_says_which_variable(monkeypatch) -> None:
    from medprune.errors import ConfigError

    for var in ("GOOGLE_CLOUD_PROJECT", "MEDPRUNE_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match=r"model.source: \$\{GOOGLE_CLOUD_PROJECT\} is not set"):
        load_config(ROOT / "examples" / "prod.yaml")
