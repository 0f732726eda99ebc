"""docs/pruning-pattern.md quotes every measured number from the latest results file that
measured it (issue 25, item 10): `make docs-numbers` renders the guide from its template
and benchmarks/results; these tests fail when the committed guide differs from that."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import docs_numbers

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "pruning-pattern.md"
RESULTS = REPO / "benchmarks" / "results"


def test_guide_is_rendered_from_the_results_files() -> None:
    assert GUIDE.read_text(encoding="utf-8") == docs_numbers.rendered_guide(), (
        "docs/pruning-pattern.md differs from its template filled from benchmarks/results: "
        "edit docs/pruning-pattern.template.md and run `make docs-numbers`"
    )
    assert docs_numbers.main(["--check"]) == 0


def test_check_fails_when_a_number_in_the_guide_is_edited(tmp_path, monkeypatch) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    edited = tmp_path / "guide.md"
    edited.write_text(text.replace("2.70x / 2.78x", "1.33x / 1.46x", 1), encoding="utf-8")
    monkeypatch.setattr(docs_numbers, "GUIDE", edited)
    assert docs_numbers.main(["--check"]) == 1


def test_unstructured_numbers_are_from_the_latest_full_size_run() -> None:
    """Read independently of docs_numbers: the latest pruning file with a 64 x 256 Wanda row."""
    files = sorted(RESULTS.glob("pruning-2*.json"))
    latest = None
    for path in files:
        rows = json.loads(path.read_text())["rows"]
        if any(r["name"] == "wanda 50%" and r["settings"]["num_samples"] == 64 for r in rows):
            latest = path
    assert latest is not None
    rows = {r["name"]: r for r in json.loads(latest.read_text())["rows"]}
    text = GUIDE.read_text(encoding="utf-8")
    peaks = f"{rows['wanda 50%']['peak_over_model']:.2f}x / {rows['sparsegpt 50%']['peak_over_model']:.2f}x"
    assert peaks in text and latest.name in text
    # superseded figures of earlier runs are gone; width -50% has one speed-up only
    assert "1.33x model" not in text and "1.46x" not in text
    speeds = [
        *re.findall(r"by a half\s+\*\*(\d\.\d\d)x\*\*", text),
        *re.findall(r"\| width -50% parameters \|[^\n]*\*\*(\d\.\d\d)x\*\*", text),
        *re.findall(r"\| width -50% parameters \| (\d\.\d\d)x", text),
    ]
    assert len(speeds) == 3 and len(set(speeds)) == 1, speeds


def test_every_linked_results_file_exists() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    links = re.findall(r"\]\(\.\./benchmarks/results/([^)]+)\)", text)
    assert links
    for name in links:
        assert (RESULTS / name).is_file(), name


def test_a_placeholder_without_a_value_is_an_error() -> None:
    with pytest.raises(KeyError, match="no value for"):
        docs_numbers.render("{{nowhere}}", {})


def test_a_gemma_serving_file_does_not_supersede_the_smollm2_numbers(tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(docs_numbers.RESULTS, results)
    latest = sorted(results.glob("serving-2*.json"))[-1]
    doc = json.loads(latest.read_text())
    doc["run"]["model"] = {"name": "gemma3-270m", "model_type": "gemma3_text", "terms": ["gemma"]}
    doc["args"]["ppl_texts"] = 20
    (results / "serving-29991231T2359Z-0000000.json").write_text(json.dumps(doc))
    monkeypatch.setattr(docs_numbers, "RESULTS", results)
    assert docs_numbers.serving_model(doc) == "gemma3-270m"
    assert docs_numbers.serving_model({"args": {"model": "m/smollm2-135m-instruct"}}) == (
        "smollm2-135m-instruct"
    )
    sv = docs_numbers.latest_serving(lambda d, r: r["row"] == "dense", "a dense row")
    assert sv.file != "serving-29991231T2359Z-0000000.json"
