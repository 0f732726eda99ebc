"""End to end: the whole pipeline under kfp.local on a tiny random Llama."""

import json
from pathlib import Path

import pytest

from medprune.cli import main
from medprune.register.local import LocalRegistry

from tests.helpers.fixture_data import write_run_config

pytestmark = pytest.mark.slow


def _summary(capsys, out: str | None = None) -> dict:
    out = capsys.readouterr().out if out is None else out
    path = [line for line in out.splitlines() if line.startswith("summary: ")][-1].removeprefix(
        "summary: "
    )
    return json.loads(Path(path).read_text())


def test_passing_gate_registers_version_1(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(
        tmp_path, tiny_model_dir, gate={"min_accuracy": 0.0, "max_perplexity_ratio": 100.0}
    )
    assert main(["run-local", str(cfg), "--run-id", "r1"]) == 0
    out = capsys.readouterr().out
    summary = _summary(capsys, out)
    # a quiet terminal: one line per task start and end, progress lines, the table and paths;
    # kfp's whole log (every task's executor input) is in RUN_DIR/run.log
    log = Path(summary["log"])
    assert log == tmp_path / "runs" / "r1" / "run.log" and f"log: {log}" in out
    assert "executor_input" not in out and "\x1b[" not in out
    for task in (
        "load",
        "prune",
        "recover",
        "evaluate baseline",
        "evaluate candidate",
        "gate",
        "register",
    ):
        assert sum(line.endswith(f"] {task}: started") for line in out.splitlines()) == 1, out
        assert sum(f"] {task}: done in " in line for line in out.splitlines()) == 1, out
    assert len(out.splitlines()) < 80, out
    text = log.read_text()
    # 8 tasks: resolve-inputs (model version and data sha256 for cache keys) and the seven stages
    assert text.count("Got executor_input:") == 8 and "finished with status SUCCESS" in text
    assert summary["gate"]["passed"] is True
    assert summary["registered"]["version"] == 1
    assert summary["registered"]["aliases"] == ["candidate"]
    assert abs(summary["sparsity"] - 0.5) < 1e-6
    base, cand = summary["metrics"]["baseline"], summary["metrics"]["candidate"]
    assert 0 <= base["baseline_accuracy"] <= 1 and 0 <= cand["candidate_accuracy"] <= 1
    assert base["baseline_perplexity"] > 1 and cand["candidate_perplexity"] > 1
    assert cand["candidate_nonzero_params"] < base["baseline_nonzero_params"]
    # the registered model is the sparse candidate, with its provenance
    reg = LocalRegistry(tmp_path / "registry")
    assert reg.aliases("tiny-llama") == {"candidate": 1}
    meta = reg.metadata("tiny-llama", "candidate")
    assert meta["gate"]["passed"] and meta["config"]["prune"]["sparsity"] == 0.5
    from medprune.load.model import load_model
    from medprune.prune.apply import sparsity_report

    model, _ = load_model(reg.resolve("tiny-llama", 1))
    assert abs(sparsity_report(model)["sparsity"] - 0.5) < 1e-6
    # baseline and candidate were scored on the same items
    run_dir = Path(summary["run_dir"])
    assert run_dir.name == "r1" and (run_dir / "summary.json").is_file()
    evaluation = summary["evaluation"]
    assert evaluation["baseline"]["mcq"]["n"] == evaluation["candidate"]["mcq"]["n"] == 8


def test_impossible_threshold_registers_nothing(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir, gate={"min_accuracy": 0.99})
    assert main(["run-local", str(cfg), "--run-id", "r2", "--fail-on-gate"]) == 3
    summary = _summary(capsys)
    assert summary["gate"]["passed"] is False
    assert summary["registered"] is None
    assert any("min_accuracy" in r and "0.99" in r for r in summary["gate"]["reasons"])
    assert (
        not (tmp_path / "registry" / "tiny-llama").exists()
        or LocalRegistry(tmp_path / "registry").versions("tiny-llama") == []
    )
