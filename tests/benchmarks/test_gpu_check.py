"""benchmarks/gpu_check.py on the CPU at a tiny shape: every pruning row, the reload, the
recovery and the evaluation run through the library and land in one JSON; a step that fails
is recorded and makes the exit code 1."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_check

pytestmark = pytest.mark.slow


def test_tiny_shapes_run_every_step_on_cpu(tmp_path) -> None:
    out = tmp_path / "check.json"
    code = gpu_check.main(
        ["--tiny", "--device", "cpu", "--eval-items", "3", "--json", str(out), "--quiet"]
    )
    result = json.loads(out.read_text())
    assert code == 0 and result["failures"] == []
    assert result["device"] == "cpu" and result["run"]["commit"]
    assert set(result["models"]) == {"llama3-1b", "gemma3-1b"}
    gemma = result["models"]["gemma3-1b"]["config"]
    assert (gemma["model_type"], gemma["num_key_value_heads"], gemma["head_dim"]) == (
        "gemma3_text",
        1,
        16,
    )
    for name, res in result["models"].items():
        assert set(res["rows"]) == set(gpu_check.ROWS), name
        for row, entry in res["rows"].items():
            assert entry["prune"]["error"] is None, (name, row)
            assert entry["prune"]["peak_gpu_bytes"] is None  # no CUDA here: not measured
            assert entry["masks"]["ok"] and entry["reload"]["max_abs_logit_diff"] == 0.0
        assert res["rows"]["wanda-50"]["masks"]["min_sparsity"] >= 0.49
        assert res["rows"]["sparsegpt-2:4"]["masks"]["nm_violations"] == []
        assert res["rows"]["depth-25"]["params_after"] < res["params"]
        assert res["rows"]["width-25"]["params_after"] < res["params"]
        assert res["recovery"]["steps"] == 2 and res["recovery"]["masks"]["ok"]
        for label in ("dense", gpu_check.RECOVER_ROW):
            ev = res["evaluation"][label]
            assert ev["items"] == 3 and 0.0 <= ev["acc"] <= 1.0 and ev["seconds"] > 0


def test_a_failing_step_is_recorded_and_fails_the_run(tmp_path) -> None:
    out = tmp_path / "check.json"
    code = gpu_check.main(
        ["--tiny", "--device", "cpu", "--shapes", "llama3-8b", "--json", str(out), "--quiet"]
    )
    result = json.loads(out.read_text())
    assert code == 1
    assert result["failures"] == ["llama3-8b: KeyError: 'llama3-8b'"]
