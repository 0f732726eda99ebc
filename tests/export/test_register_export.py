"""`registry.export: [gguf]` through the real stages: the registered version carries the
GGUF file and the Modelfile next to the model files."""

from __future__ import annotations

from medprune.config import load_config
from medprune.evaluate.stage import stage_evaluate
from medprune.export.gguf import read_gguf_metadata
from medprune.gate.stage import stage_gate
from medprune.load.model import save_model
from medprune.load.stage import stage_load
from medprune.prune.stage import stage_prune
from medprune.register.local import LocalRegistry
from medprune.register.stage import RunArtifacts, stage_register

from tests.helpers.fixture_data import write_run_config
from tests.helpers.variants import build_variant


def test_register_stage_adds_gguf_and_modelfile(tmp_path) -> None:
    model_dir = save_model(*build_variant("dense"), tmp_path / "src")
    cfg = load_config(
        write_run_config(
            tmp_path,
            model_dir,
            gate={"min_accuracy": 0.0},
            recover={"enabled": False},
            registry={
                "export": ["gguf"],
                "local": {"root": str(tmp_path / "registry")},
                "aliases": ["candidate"],
            },
            serve={"gguf": {"outtypes": ["q8_0"]}},
        )
    )
    a = tmp_path / "artifacts"
    quiet = lambda m: None  # noqa: E731
    for name in ("dense", "pruned", "baseline", "candidate", "gate", "summary"):
        (a / name).mkdir(parents=True)
    stage_load(cfg, a / "dense", progress=quiet)
    stage_prune(cfg, a / "dense", a / "pruned", progress=quiet)
    stage_evaluate(cfg, a / "dense", a / "baseline", label="baseline", progress=quiet)
    stage_evaluate(cfg, a / "pruned", a / "candidate", label="candidate", progress=quiet)
    assert stage_gate(cfg, a / "baseline", a / "candidate", a / "gate").passed
    messages = []
    summary = stage_register(
        cfg,
        RunArtifacts(
            "r1", a / "pruned", a / "gate", a / "baseline", a / "candidate", a / "summary"
        ),
        progress=messages.append,
    )
    version_dir = LocalRegistry(tmp_path / "registry").resolve("tiny-llama", "candidate")
    assert summary["registered"]["path"] == str(version_dir)
    names = {p.name for p in version_dir.iterdir()}
    assert {
        "tiny-llama-q8_0.gguf",
        "Modelfile",
        "export.json",
        "model.safetensors",
        "config.json",
    } <= names
    assert read_gguf_metadata(version_dir / "tiny-llama-q8_0.gguf")["llama.block_count"] == 2
    assert "FROM ./tiny-llama-q8_0.gguf" in (version_dir / "Modelfile").read_text()
    assert any("exported gguf" in m for m in messages)
    # the pruned artifact itself is untouched (the export went into a staging copy)
    assert not any(p.suffix == ".gguf" for p in (a / "pruned").iterdir())
