"""benchmarks/search.py --run-grid on a tiny model: the exhaustive grid prunes, recovers
(with the full budget) and evaluates every candidate, certifies its chosen ones with the same
test, reuses the search's cache entries and counts them at what they cost when made."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.search import command_line, from_scratch_cpu_seconds, run_grid
from medprune.config import load_config

from tests.helpers.search import write_search_config
from tests.helpers.tiny import save_tiny_model


@pytest.mark.slow
def test_the_grid_runs_every_candidate_and_counts_reused_pieces_from_scratch(tmp_path):
    from medprune.search.candidate import cache_entry
    from medprune.search.stage import run_search
    from medprune.search.workspace import load_state, run_dir

    model_dir = save_tiny_model(tmp_path / "model")
    cfg = load_config(
        write_search_config(
            tmp_path,
            model_dir,
            search={"axes": [{"kind": "width", "values": [0.2, 0.3, 0.4]}], "bisect": False},
        )
    )
    said: list[str] = []
    run_search(cfg, "s", progress=said.append)
    state = load_state(cfg, "s")
    last = state.last_rung
    # successive halving keeps at most two of three (the most compressed and the safest)
    finalists = [c for c in state.candidates.values() if last in c.results]
    others = [c for c in state.candidates.values() if last not in c.results]
    assert finalists and others
    other = others[0]

    said.clear()
    grid = run_grid(cfg, state, "s", progress=said.append)
    rows = {r["label"]: r for r in grid["rows"]}
    assert grid["candidates"] == 3 and not grid["estimated"]
    # every candidate, the one successive halving dropped too, got the full recovery and
    # the final rung's evaluation
    assert all(r["status"] == "ok" and r["n_items"] == 16 for r in rows.values())
    # the search's finalists came entirely from the search's cache, counted at their making cost
    for finalist in finalists:
        search_pieces = finalist.results[last]["pieces"]
        for path in search_pieces:
            assert f"cache hit: {path}" in said
        fin = rows[finalist.label]
        assert fin["cpu_seconds"] == pytest.approx(sum(search_pieces.values()))
        assert fin["cpu_seconds"] == pytest.approx(
            sum(cache_entry(Path(p))["cpu_seconds"] for p in search_pieces)
        )
        assert fin["cpu_seconds_this_run"] < fin["cpu_seconds"]
    # the dropped one reused its pruned model and paid for its recoveries and evaluation
    grid_state = load_state(cfg, "s-grid")
    other_pieces = grid_state.candidates[other.id].results[last]["pieces"]
    assert any("/pruned" in p and f"cache hit: {p}" in said for p in other_pieces)
    made = [p for p in other_pieces if "recovered-" in p]
    assert made and not any(f"cache hit: {p}" in said for p in made)
    # from scratch: every candidate's pieces + the shared dense pieces + certification
    assert set(grid["shared_cpu_seconds"]) == {
        "dense_model",
        "dense_calibration",
        "baseline_search_eval",
        "baseline_certification_eval",
    }
    assert grid["cpu_seconds"] == pytest.approx(
        sum(r["cpu_seconds"] for r in rows.values())
        + sum(grid["shared_cpu_seconds"].values())
        + grid["certification_cpu_seconds"]
    )
    assert grid["cpu_seconds"] > grid["cpu_seconds_this_run"] > 0
    assert from_scratch_cpu_seconds(grid_state) == pytest.approx(grid["cpu_seconds"])
    # the same certification, on the grid's own chosen candidates; the search's files stay
    assert grid["certification_order"] and grid["certified"]["label"] in grid["certification_order"]
    assert load_state(cfg, "s").certification == state.certification
    assert (run_dir(cfg, "s-grid") / "summary.json").is_file()


def test_the_recorded_command_reproduces_the_run():
    import argparse

    args = argparse.Namespace(
        json="out.json", work="/tmp/w", width=[0.2, 0.3], sparsity=[], run_grid=True, nonzero=False
    )
    assert command_line(args) == "python benchmarks/search.py --width 0.2 0.3 --sparsity --run-grid"


def test_hand_picked_reads_the_recorded_result_files():
    """The reference row comes from benchmarks/results as committed ({"run", "rows"} files):
    under params the smallest passing row is width -25% (101.3M of 134.5M parameters);
    under non-zero parameters Wanda 50% is smaller."""
    from benchmarks.search import hand_picked

    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    by_params = hand_picked(results, "params")
    assert by_params is not None and by_params["row"].startswith("width-25")
    assert 101_000_000 < by_params["size"] < 101_500_000
    by_nonzero = hand_picked(results, "nonzero_params")
    assert by_nonzero is not None and by_nonzero["size"] < by_params["size"]
