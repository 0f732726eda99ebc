"""Model terms: a model folder that carries its release terms is refused unless the run
accepts them, and every model the pipeline derives from it carries the terms files too."""

from __future__ import annotations

import re

import pytest

from medprune.config import load_config, parse_config
from medprune.errors import ConfigError
from medprune.load.stage import stage_load
from medprune.load.terms import copy_terms, terms_in
from medprune.preflight import preflight_run
from medprune.prune.stage import stage_prune

from tests.helpers.fixture_data import write_run_config


def _with_gemma_terms(model_dir):
    (model_dir / "GEMMA_TERMS.html").write_text("<html>Gemma Terms of Use</html>")
    (model_dir / "GEMMA_NOTICE.md").write_text("Gemma is provided under the Gemma Terms of Use.")
    return model_dir


def test_unaccepted_terms_are_refused_before_any_work(tmp_path, tiny_model_dir):
    _with_gemma_terms(tiny_model_dir)
    cfg = load_config(write_run_config(tmp_path, tiny_model_dir))
    errors = preflight_run(cfg).errors
    assert any(
        e.startswith("model.accept_terms:") and "carries the gemma terms (GEMMA_TERMS.html)" in e
        for e in errors
    ), errors
    with pytest.raises(ConfigError, match=re.escape("model.accept_terms")):
        stage_load(cfg, tmp_path / "loaded", progress=lambda _: None)
    assert not (tmp_path / "loaded").exists()
    accepted = load_config(
        write_run_config(tmp_path / "ok", tiny_model_dir, model={"accept_terms": ["gemma"]})
    )
    assert preflight_run(accepted).errors == []


def test_derived_models_carry_the_terms(tmp_path, tiny_model_dir):
    _with_gemma_terms(tiny_model_dir)
    cfg = load_config(write_run_config(tmp_path, tiny_model_dir, model={"accept_terms": ["gemma"]}))
    stage_load(cfg, tmp_path / "loaded", progress=lambda _: None)
    assert terms_in(tmp_path / "loaded") == ["gemma"]
    stage_prune(cfg, tmp_path / "loaded", tmp_path / "pruned", progress=lambda _: None)
    assert (tmp_path / "pruned" / "GEMMA_TERMS.html").read_text() == (
        tiny_model_dir / "GEMMA_TERMS.html"
    ).read_text()
    assert (tmp_path / "pruned" / "GEMMA_NOTICE.md").is_file()
    assert copy_terms(tmp_path / "nothing", tmp_path / "x") == []


def test_every_known_terms_name_has_its_files():
    from medprune.config.model import KNOWN_TERMS
    from medprune.load.terms import TERMS_FILES

    assert set(KNOWN_TERMS) == set(TERMS_FILES)


def test_unknown_terms_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model.accept_terms.*unknown terms \['llama'\]"):
        parse_config(
            {"model": {"source": "m", "accept_terms": ["llama"]}, "evaluate": {"perplexity": "p"}}
        )
