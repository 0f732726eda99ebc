import json

import pytest

from medprune.errors import RegistryError
from medprune.register.local import LocalRegistry


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "config.json").write_text("{}")
    return d


def test_versions_increase_and_aliases_move(tmp_path, model_dir):
    reg = LocalRegistry(tmp_path / "reg")
    v1 = reg.register("m", model_dir, {"run_id": "a"}, aliases=["candidate"])
    v2 = reg.register("m", model_dir, {"run_id": "b"}, aliases=["candidate"])
    assert (v1.version, v2.version) == (1, 2)
    assert reg.aliases("m") == {"candidate": 2}
    assert reg.metadata("m", "candidate")["run_id"] == "b"
    assert (reg.resolve("m", 1) / "model.safetensors").read_bytes() == b"weights"
    reg.set_alias("m", "production", 1)
    assert reg.aliases("m") == {"candidate": 2, "production": 1}
    with pytest.raises(RegistryError, match="no version 7"):
        reg.set_alias("m", "production", 7)


def test_versions_never_reuse_numbers(tmp_path, model_dir):
    reg = LocalRegistry(tmp_path / "reg")
    reg.register("m", model_dir, {})
    reg.register("m", model_dir, {})
    import shutil

    shutil.rmtree(reg.root / "m" / "1")
    assert reg.register("m", model_dir, {}).version == 3


def test_metadata_content(tmp_path, model_dir):
    reg = LocalRegistry(tmp_path / "reg")
    v = reg.register("m", model_dir, {"sparsity": 0.5}, aliases=["candidate"])
    meta = json.loads((tmp_path / "reg" / "m" / "1" / "metadata.json").read_text())
    assert meta["sparsity"] == 0.5 and meta["version"] == 1 and meta["aliases"] == ["candidate"]
    assert v.path == str(tmp_path / "reg" / "m" / "1")


def test_failure_midway_leaves_nothing(tmp_path, model_dir):
    reg = LocalRegistry(tmp_path / "reg")
    reg.register("m", model_dir, {}, aliases=["candidate"])

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("boom while writing metadata")

    with pytest.raises(RuntimeError, match="boom"):
        reg.register("m", model_dir, {"bad": Unserialisable()}, aliases=["candidate"])
    assert reg.versions("m") == [1]
    assert reg.aliases("m") == {"candidate": 1}
    leftovers = [
        p.name
        for p in (tmp_path / "reg" / "m").iterdir()
        if p.name not in {"1", "aliases.json", ".lock"}
    ]
    assert leftovers == []


def test_unwritable_root(tmp_path, model_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    reg = LocalRegistry(blocker / "reg")
    with pytest.raises(RegistryError, match="not a directory"):
        reg.register("m", model_dir, {})


def test_bad_name_and_alias(tmp_path, model_dir):
    reg = LocalRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="model name"):
        reg.register("Bad Name", model_dir, {})
    with pytest.raises(RegistryError, match="no alias 'production'"):
        reg.resolve("m", "production")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_refuses_non_finite_metrics(tmp_path, model_dir, bad):
    reg = LocalRegistry(tmp_path / "reg")
    metrics = {
        "baseline": {"baseline_accuracy": 0.7},
        "candidate": {"candidate_accuracy": 0.6, "candidate_perplexity": bad},
    }
    with pytest.raises(
        RegistryError,
        match=rf"1 metric\(s\) are not finite: candidate\.candidate_perplexity = {bad}",
    ):
        reg.register("m", model_dir, {"metrics": metrics})
    assert reg.versions("m") == []
