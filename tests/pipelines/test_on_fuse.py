"""Every stage, and the whole local pipeline, on a file system that refuses directory
renames as Cloud Storage FUSE does (Vertex AI puts every artifact on /gcs/...)."""

import json
from pathlib import Path

import pytest

from medprune.config import load_config
from medprune.evaluate.stage import stage_evaluate
from medprune.gate.stage import stage_gate
from medprune.io.atomic import check_complete
from medprune.load.stage import stage_load
from medprune.prune.stage import stage_prune
from medprune.recover.stage import stage_recover
from medprune.register.local import LocalRegistry
from medprune.register.stage import RunArtifacts, stage_register

from tests.helpers.fixture_data import write_run_config


def test_each_stage_writes_its_artifacts_without_directory_renames(
    tmp_path, tiny_model_dir, fuse_fs
):
    cfg = load_config(
        write_run_config(
            tmp_path, tiny_model_dir, gate={"min_accuracy": 0.0}, recover={"checkpoint_every": 1}
        )
    )
    a = fuse_fs.root / "artifacts"
    quiet = lambda m: None  # noqa: E731
    for name in ("dense", "pruned", "recovered", "baseline", "candidate", "gate", "summary"):
        (a / name).mkdir(parents=True)  # kfp creates every output folder up front
    stage_load(cfg, a / "dense", progress=quiet)
    stage_prune(cfg, a / "dense", a / "pruned", progress=quiet)
    stage_recover(cfg, a / "pruned", a / "recovered", teacher_dir=a / "dense", progress=quiet)
    for model in ("dense", "pruned", "recovered"):
        assert "model.safetensors" in check_complete(a / model)
    stage_evaluate(cfg, a / "dense", a / "baseline", label="baseline", progress=quiet)
    stage_evaluate(cfg, a / "recovered", a / "candidate", label="candidate", progress=quiet)
    assert stage_gate(cfg, a / "baseline", a / "candidate", a / "gate").passed
    summary = stage_register(
        cfg,
        RunArtifacts(
            "r1", a / "recovered", a / "gate", a / "baseline", a / "candidate", a / "summary"
        ),
        progress=quiet,
    )
    assert summary["registered"]["version"] == 1
    assert fuse_fs.refused() == []


@pytest.mark.slow
def test_whole_local_pipeline_runs_without_directory_renames(
    tmp_path, tiny_model_dir, fuse_fs, capsys
):
    from medprune.cli import main

    # run directory (kfp.local's pipeline root: all artifacts) on the "FUSE" mount; the local
    # registry stays on a local disk, as it would beside a real deployment
    cfg = write_run_config(
        tmp_path,
        tiny_model_dir,
        output_dir=str(fuse_fs.root / "runs"),
        gate={"min_accuracy": 0.0, "max_perplexity_ratio": 100.0},
        recover={"checkpoint_every": 1},
    )
    assert main(["run-local", str(cfg), "--run-id", "fuse"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(Path(out.split("summary: ")[-1].splitlines()[0]).read_text())
    assert summary["gate"]["passed"] and summary["registered"]["version"] == 1
    assert LocalRegistry(tmp_path / "registry").versions("tiny-llama") == [1]
    # every component ran in a subprocess with the layer installed, and none renamed a folder
    assert len(fuse_fs.subprocesses()) >= 7
    assert fuse_fs.refused() == []
