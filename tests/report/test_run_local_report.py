"""End to end: a local run writes the HTML report into the run directory and records it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medprune.cli import main

from tests.helpers.fixture_data import write_run_config

pytestmark = pytest.mark.slow


def test_local_run_writes_report_with_gate_table(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(
        tmp_path,
        tiny_model_dir,
        gate={
            "min_accuracy": 0.0,
            "critical_items": ["q0", "q1"],
            "non_inferiority": {"margin": 0.05, "min_items": 30, "n_resamples": 200},
        },
    )
    assert main(["run-local", str(cfg), "--run-id", "rep"]) == 0
    out = capsys.readouterr().out
    summary_path = [line for line in out.splitlines() if line.startswith("summary: ")][
        -1
    ].removeprefix("summary: ")
    summary = json.loads(Path(summary_path).read_text())
    # 8 fixture items < min_items: the gate fails and says why
    assert summary["gate"]["passed"] is False
    assert any("only 8 items (< min_items 30)" in r for r in summary["gate"]["reasons"])
    report = Path(summary["report"])
    assert report == Path(summary["run_dir"]) / "report.html" and report.is_file()
    assert f"report: {report}" in out
    html = report.read_text()
    assert (
        '<table class="gate-table">' in html
        and "non_inferiority" in html
        and "critical_items" in html
    )
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 2
    assert Path(summary["report_md"]).read_text().startswith("# medprune")
