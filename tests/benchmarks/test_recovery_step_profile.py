"""benchmarks/recovery_step_profile.py on a tiny model: every variant is stepped, every phase
timed, and the results file says how it was made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.recovery_step_profile import PHASES, parse_variant, shares

from tests.helpers.fixture_data import write_fixture_data
from tests.helpers.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[2]


def test_variants_and_shares() -> None:
    assert parse_variant("full") == {}
    assert parse_variant("top_k=64,hidden=0.5") == {"top_k": 64, "hidden_weight": 0.5}
    with pytest.raises(ValueError, match="use full, top_k=K"):
        parse_variant("chunks=4")
    assert shares({"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}


def test_profile_runs_every_variant_on_a_tiny_model(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "dense", seed=1, num_hidden_layers=3)
    data = write_fixture_data(tmp_path / "data")
    out = tmp_path / "profile.json"
    cmd = [
        sys.executable, "benchmarks/recovery_step_profile.py",
        "--model", f"tiny={model}", "--data", str(data["text"]),
        "--variant", "full", "--variant", "top_k=8", "--variant", "top_k=8,hidden=1",
        "--steps", "2", "--warmup", "1", "--batch-size", "2", "--seq-len", "32",
        "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["run"]["complete"] is True and result["run"]["commit"]
    assert result["run"]["machine"]["torch_threads_per_row"] == 1
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"full", "top_k=8", "top_k=8,hidden=1"}
    for r in rows.values():
        assert set(r["wall_s"]) == set(PHASES) and r["step_wall_s"] > 0
        assert sum(r["wall_share"].values()) == pytest.approx(1.0)
        assert len(r["losses"]) == 3 and len(r["wall_s_per_step"]) == 2
    assert "hidden" in rows["top_k=8,hidden=1"]["losses"][0]
    assert rows["top_k=8"]["distill"]["top_k"] == 8 and rows["full"]["distill"]["top_k"] is None
    assert "| tiny | top_k=8 |" in proc.stdout
    alone = result["loss_alone"]["tiny"]
    assert set(alone) == {"ce", "full_kl", "full_kl+0.5ce", "top8_kl", "top8_kl+0.5ce"}
    assert all(v["forward_cpu_s"] >= 0 and v["backward_cpu_s"] >= 0 for v in alone.values())
