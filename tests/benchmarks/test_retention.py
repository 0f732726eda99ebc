"""benchmarks/retention.py on a tiny model: every recipe runs through the product's prune,
recover and evaluate stages, every source is scored against dense with a paired interval,
and the retained share follows its definition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.retention import Recipe, chance_rate, parse_recipe, retained_share, score_source

from tests.helpers.fixture_data import write_fixture_data
from tests.helpers.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[2]


def test_retained_share_is_accuracy_above_chance_kept() -> None:
    assert retained_share(0.25, 0.45, 0.25) == 0.0
    assert retained_share(0.45, 0.45, 0.25) == pytest.approx(1.0)
    assert retained_share(0.35, 0.45, 0.25) == pytest.approx(0.5)
    assert retained_share(0.3, 0.25, 0.25) is None  # dense at chance: nothing to keep


def _pred(i: int, correct: bool, n_options: int = 4) -> dict:
    return {"id": f"q{i}", "correct": correct, "options": ["a"] * n_options}


def test_score_source_pairs_items_and_marks_uninformative_sources() -> None:
    dense = [_pred(i, i % 5 != 0) for i in range(200)]  # 80% right, chance 25%
    cand = [_pred(i, i % 5 != 0 and i % 3 != 0) for i in range(200)]
    score = score_source("wordnet-medical", dense, list(reversed(cand)), None)
    assert score.n == 200 and score.dense_accuracy == pytest.approx(0.8)
    assert score.dense_only == sum(1 for i in range(200) if i % 5 != 0 and i % 3 == 0)
    assert score.candidate_only == 0 and score.upper < 0 and score.informative
    assert score.retained == pytest.approx((score.accuracy - 0.25) / (0.8 - 0.25))
    at_chance = [_pred(i, i % 4 == 0) for i in range(200)]
    flat = score_source("drug-brands", at_chance, at_chance, None)
    assert not flat.informative and flat.retained is None
    assert chance_rate([_pred(0, True, 3), _pred(1, True, 4)]) == pytest.approx((1 / 3 + 1 / 4) / 2)
    with pytest.raises(ValueError, match="different items"):
        score_source("x", dense, cand[:-1], None)


def test_recipes_take_a_lora_prefix_and_a_hidden_suffix() -> None:
    assert parse_recipe("domain") == Recipe("domain", lora=False, hidden=False)
    assert parse_recipe("lora-mix+hidden") == Recipe("mix", lora=True, hidden=True)
    for bad in ("none+hidden", "lora-none", "domain+deep", "everything"):
        with pytest.raises(ValueError, match="optionally lora- prefixed and"):
            parse_recipe(bad)


@pytest.mark.slow
def test_retention_benchmark_runs_each_recipe_on_a_tiny_model(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "dense", seed=1)
    data = write_fixture_data(tmp_path / "data")
    out = tmp_path / "result.json"
    cmd = [
        sys.executable,
        "benchmarks/retention.py",
        "--model", str(model),
        "--recovery-data", str(data["text"]),
        "--calibration-data", str(data["text"]),
        "--mcq", str(data["mcq"]),
        "--wordnet", str(data["mcq"]),
        "--drugs", str(data["mcq"]),
        "--row", "wanda-50=wanda:0.5",
        "--recipe", "none", "--recipe", "domain", "--recipe", "teacher", "--recipe", "lora-mix",
        "--recipe", "domain+hidden", "--hidden-weight", "0.5",
        "--max-steps", "2", "--budget-minutes", "5", "--seq-len", "32", "--batch-size", "2",
        "--teacher-sequences", "4", "--calib-samples", "4", "--eval-seq-len", "128",
        "--threads", "1", "--work", str(tmp_path / "work"), "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["run"]["complete"] is True and result["run"]["commit"]
    cells = {c["recipe"]: c for c in result["rows"]}
    assert set(cells) == {"none", "domain", "teacher", "lora-mix", "domain+hidden"}
    assert cells["none"]["recover_steps"] == 0
    assert all(
        cells[r]["recover_steps"] == 2 for r in ("domain", "teacher", "lora-mix", "domain+hidden")
    )
    assert cells["domain+hidden"]["hidden_weight"] == 0.5 and cells["domain"]["hidden_weight"] == 0
    assert cells["none"]["hidden_weight"] is None
    assert cells["teacher"]["data_shares"] == {next(iter(cells["teacher"]["data_shares"])): 1.0}
    assert set(cells["lora-mix"]["data_shares"]) == {"domain", "teacher"}
    # The teacher's text was written once and read from the cache by the second recipe.
    assert cells["teacher"]["teacher_generation_wall_s"] is not None
    assert cells["lora-mix"]["teacher_generation_wall_s"] is None
    for cell in result["rows"]:
        assert [s["source"] for s in cell["scores"]] == [
            "builtin",
            "wordnet-medical",
            "drug-brands",
        ]
        for s in cell["scores"]:
            assert s["n"] == 8 and s["lower"] <= s["difference"] <= s["upper"]
    assert "| wanda-50 | teacher |" in proc.stdout
