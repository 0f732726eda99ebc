from pathlib import Path

import pytest

from medprune.config import RunConfig, load_config, parse_config
from medprune.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def minimal(**kw):
    data = {"model": {"source": "m"}, "evaluate": {"mcq": "q.jsonl"}}
    data.update(kw)
    return data


def test_shipped_example_is_valid():
    cfg = load_config(REPO / "examples" / "local.yaml")
    assert cfg.prune.sparsity == 0.4
    assert cfg.registry.target == "local"
    assert Path(cfg.model.source).is_absolute()


def test_defaults():
    cfg = parse_config(minimal())
    assert cfg.prune.method == "magnitude"
    assert cfg.prune.exclude == ["lm_head", "embed_tokens"]
    assert cfg.model.trust_remote_code is False
    assert set(cfg.pipeline.resources) == {
        "load",
        "prune",
        "recover",
        "evaluate",
        "gate",
        "register",
    }


def test_unknown_key_names_the_field():
    with pytest.raises(ConfigError, match=r"prune\.sparsty: unknown key"):
        parse_config(minimal(prune={"sparsty": 0.5}))


@pytest.mark.parametrize("bad", [1.0, -0.1, 2])
def test_sparsity_out_of_range_names_the_field(bad):
    with pytest.raises(ConfigError, match=r"prune\.sparsity: .*\[0, 1\)"):
        parse_config(minimal(prune={"sparsity": bad}))


@pytest.mark.parametrize("bad", ["4:4", "2-4", "0:4", "dense"])
def test_bad_pattern(bad):
    with pytest.raises(ConfigError, match=r"prune\.pattern"):
        parse_config(minimal(prune={"pattern": bad}))


def test_nm_parsed():
    assert parse_config(minimal(prune={"pattern": "2:4"})).prune.nm == (2, 4)


def test_evaluate_needs_data():
    with pytest.raises(ConfigError, match="evaluate"):
        parse_config(minimal(evaluate={}))


def test_missing_model_section():
    with pytest.raises(ConfigError, match=r"model: Field required"):
        parse_config({"evaluate": {"mcq": "q"}})


def test_bad_memory_and_stage():
    with pytest.raises(ConfigError, match=r"pipeline\.resources\.prune\.memory"):
        parse_config(minimal(pipeline={"resources": {"prune": {"memory": "lots"}}}))
    with pytest.raises(ConfigError, match="unknown stage"):
        parse_config(minimal(pipeline={"resources": {"deploy": {}}}))


def test_resource_override_keeps_other_stages():
    cfg = parse_config(minimal(pipeline={"resources": {"prune": {"cpu": "16", "memory": "128G"}}}))
    assert cfg.pipeline.resources["prune"].cpu == "16"
    assert cfg.pipeline.resources["recover"].memory == "64G"


def test_json_round_trip():
    cfg = parse_config(minimal(prune={"sparsity": 0.3, "pattern": "4:8"}))
    assert RunConfig.from_json(cfg.to_json()) == cfg


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_overrides_and_relative_paths(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("model: {source: models/m}\nevaluate: {mcq: data/q.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path, overrides={"prune.sparsity": 0.25})
    assert cfg.prune.sparsity == 0.25
    assert cfg.model.source == str(tmp_path / "models" / "m")
    assert cfg.evaluate.mcq == str(tmp_path / "data" / "q.jsonl")


def test_remote_sources_kept():
    cfg = parse_config(minimal(model={"source": "gs://bucket/model"}), base_dir="/x")
    assert cfg.model.source == "gs://bucket/model"
