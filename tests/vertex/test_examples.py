"""The per-environment example configs load, and agree with the Terraform naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from medprune.config import load_config, resolve_vertex
from medprune.io.uris import parse_vertex_model_uri

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_example_loads_and_targets_vertex(env, monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", f"medprune-{env}")
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "us-central1")
    monkeypatch.setenv("MEDPRUNE_BUCKET", f"medprune-{env}-medprune-{env}")
    monkeypatch.delenv("MEDPRUNE_VERTEX_API_ENDPOINT", raising=False)
    cfg = load_config(ROOT / "examples" / f"{env}.yaml")
    assert cfg.registry.target == "vertex"
    v = resolve_vertex(cfg.vertex)
    assert v.project == f"medprune-{env}" and v.location == "us-central1"
    # names follow infra/modules/medprune: PREFIX-ENV(-PROJECT)
    assert v.staging_bucket == f"gs://medprune-{env}-medprune-{env}"
    assert v.pipeline_root == f"gs://medprune-{env}-medprune-{env}/pipeline_root"
    assert v.service_account == f"medprune-{env}-pipeline@medprune-{env}.iam.gserviceaccount.com"
    assert v.template_repository == f"https://us-central1-kfp.pkg.dev/medprune-{env}/medprune-{env}-pipelines"
    assert cfg.pipeline.base_image.startswith(f"us-central1-docker.pkg.dev/medprune-{env}/medprune-{env}/")
    parse_vertex_model_uri(cfg.model.source)
    assert v.api_endpoint is None


def test_prod_is_locked_down() -> None:
    cfg = load_config(ROOT / "examples" / "prod.yaml")
    v = cfg.vertex
    assert v.encryption_spec_key_name and v.network and v.promotion_alias == "production"
    assert not cfg.pipeline.base_image.endswith(":latest")
