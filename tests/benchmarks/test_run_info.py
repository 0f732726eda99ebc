"""Benchmark result files say what produced them (benchmarks/run_info.py), one file per run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks.run_info import portable_command, results_path, run_info

REPO = Path(__file__).resolve().parents[2]


def test_run_info_records_commit_versions_command_machine_and_date(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/pruning.py", "--only", "dense,wanda 50%"])
    info = run_info(threads_per_row=1)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert info["commit"] == head and isinstance(info["commit_dirty"], bool)
    # the command pastes back into a shell: the quoted row list stays one argument
    assert shlex.split(info["command"])[1:] == [
        "benchmarks/pruning.py",
        "--only",
        "dense,wanda 50%",
    ]
    assert info["packages"]["torch"] == __import__("torch").__version__
    assert info["date"].endswith("+00:00")
    machine = info["machine"]
    assert machine["cores"] == os.cpu_count() and 1 <= machine["cores_usable"] <= machine["cores"]
    assert machine["torch_threads_per_row"] == 1 and len(machine["load_average_at_start"]) == 3


def test_the_command_names_no_folder_of_the_machine():
    cmd = portable_command(
        [
            "benchmarks/retention.py",
            "--work",
            "/work/bench/r1",
            "--json=/work/main/benchmarks/results/",
            "x y",
        ],
        "/work/main/.venv/bin/python",
        cwd="/work/main",
    )
    assert shlex.split(cmd) == [
        ".venv/bin/python",
        "benchmarks/retention.py",
        "--work",
        "../bench/r1",
        "--json=benchmarks/results",
        "x y",
    ]


def test_a_folder_gets_a_new_file_for_every_run(tmp_path):
    info = {"date": "2026-11-30T14:05:09+00:00", "commit": "0123456789abcdef"}
    first = results_path(f"{tmp_path}/out/", "pruning", info)
    assert first == tmp_path / "out" / "pruning-20261130T1405Z-0123456.json"
    first.write_text("{}")
    second = results_path(str(tmp_path / "out"), "pruning", info)  # same minute, same commit
    assert second.name == "pruning-20261130T1405Z-0123456-2.json"
    assert results_path(str(tmp_path / "mine.json"), "pruning", info) == tmp_path / "mine.json"
    assert (
        results_path(f"{tmp_path}/", "r", {"date": info["date"], "commit": None}).name
        == "r-20261130T1405Z-nogit.json"
    )


def test_result_files_in_the_repository_record_what_produced_them():
    files = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert files
    for path in files:
        doc = json.loads(path.read_text())
        assert "rerun" not in path.name, path
        assert isinstance(doc, dict) and doc["rows"], path
        run = doc["run"]
        assert run["command"].split()[1].startswith("benchmarks/"), path
        assert {"date", "commit", "commit_dirty", "packages", "machine", "complete"} <= set(run), (
            path
        )
        assert run["complete"] is True or run.get("note"), path  # a stopped run says why
        if run.get("recorded") is False:  # converted from before runs recorded this
            assert run["note"] and run["date_committed"] and path.stem.endswith("-unknown"), path
        else:
            assert run["date"] and run["commit"] and run["commit"][:7] in path.name, path


BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"


def test_timing_window_counts_its_own_children_apart_from_other_processes():
    from benchmarks.run_info import TimingWindow

    window = TimingWindow()
    subprocess.run([sys.executable, "-c", BUSY], check=True)  # a child: this run's own CPU
    own = window.stop()
    assert own["own_cpu_s"] >= 0.5 and len(own["load_average_at_start"]) == 3
    assert len(own["load_average_at_end"]) == 3 and own["wall_s"] > 0

    window = TimingWindow()
    # a detached process (its parent shell exits at once): someone else's CPU
    detached = f"{shlex.quote(sys.executable)} -c {shlex.quote(BUSY)} &"
    subprocess.run(["sh", "-c", detached], check=True)
    import time

    time.sleep(2.0)
    other = window.stop()
    assert other["other_cpu_s"] >= 0.4 and other["own_cpu_s"] < 0.4
    assert other["other_cores"] > other["alone_max_other_cores"] and other["alone"] is False
