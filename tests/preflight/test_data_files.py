"""Broken data files, each with one defect, built here: the preflight reads every file in full
(past evaluate.max_items) and names the field, file and line; long fields that a stage would
cut are reported with how many items and by how much."""

import json

import pytest

from medprune.config import load_config
from medprune.errors import DataError
from medprune.io.jsonl import read_jsonl
from medprune.preflight import PreflightError, preflight_run

from tests.helpers.fixture_data import write_run_config


def _mcq(i, **over):
    return {
        "id": f"q{i}",
        "question": f"Question {i}?",
        "options": ["fever", "cough", "rash", "pain"],
        "answer": 1,
        **over,
    }


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def run(tmp_path, tiny_model_dir):
    """(config path, data dir): a valid run whose data files a test then breaks."""
    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"max_items": 2, "seq_len": 512})
    return cfg, tmp_path / "data"


def _errors(cfg_path) -> list[str]:
    report = preflight_run(load_config(cfg_path))
    return report.errors


def test_valid_run_has_no_errors(run):
    cfg, _ = run
    report = preflight_run(load_config(cfg))
    assert report.errors == []
    assert any(
        c.startswith("evaluate.mcq") and "8 items, all valid (the run uses the first 2)" in c
        for c in report.checked
    )
    report.raise_for_errors()


def test_bad_line_past_max_items_is_found(run):
    cfg, data = run
    _write(data / "mcq.jsonl", [_mcq(i) for i in range(5)] + [_mcq(5, answer=7)])
    [error] = _errors(cfg)
    assert (
        error.startswith("evaluate.mcq: ")
        and "mcq.jsonl:6: field 'answer' 7 is out of range for 4 options" in error
    )


def test_duplicate_options(run):
    cfg, data = run
    _write(data / "mcq.jsonl", [_mcq(0), _mcq(1, options=["fever", "Cough", "rash", " cough"])])
    [error] = _errors(cfg)
    assert "mcq.jsonl:2: field 'options' options 1 and 3 are the same text 'cough'" in error


def test_duplicate_ids(run):
    cfg, data = run
    _write(data / "mcq.jsonl", [_mcq(0), _mcq(1), _mcq(2), _mcq(1)])
    [error] = _errors(cfg)
    assert "mcq.jsonl:4: field 'id' duplicate id 'q1' (first on line 2)" in error


def test_missing_required_field(run):
    cfg, data = run
    rec = _mcq(1)
    del rec["options"]
    _write(data / "mcq.jsonl", [_mcq(0), rec])
    [error] = _errors(cfg)
    assert "mcq.jsonl:2: missing field 'options'" in error


def test_not_utf8(run):
    cfg, data = run
    text = data / "text.jsonl"
    text.write_bytes(text.read_bytes() + '{"text": "caf\u00e9 au lait"}\n'.encode("latin-1"))
    n = len(text.read_bytes().splitlines())
    errors = _errors(cfg)
    # text.jsonl feeds perplexity and recovery: both name it
    assert any(f"text.jsonl:{n}: not UTF-8 text (byte 0xe9 at column 14)" in e for e in errors), (
        errors
    )


def test_several_problems_are_listed_together(run):
    cfg, data = run
    _write(data / "mcq.jsonl", [_mcq(0, answer="Z")])
    (data / "text.jsonl").write_text("")
    with pytest.raises(PreflightError) as info:
        preflight_run(load_config(cfg)).raise_for_errors()
    text = str(info.value)
    assert text.startswith("3 problems found before any work:")
    assert "field 'answer' 'Z' is not an index" in text and "text.jsonl: file is empty" in text


def test_json_array_is_refused_with_a_conversion_hint(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps([_mcq(0), _mcq(1)], indent=2))
    with pytest.raises(
        DataError,
        match=r"items\.json:1: a JSON array, but medprune reads JSON Lines.*jq -c '\.\[\]' items\.json",
    ):
        read_jsonl(path)
    path.write_text(json.dumps([_mcq(0), _mcq(1)]))  # an array on one line
    with pytest.raises(DataError, match="a JSON array"):
        read_jsonl(path)


def test_bom_and_crlf_are_read(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + b"".join(json.dumps(_mcq(i)).encode() + b"\r\n" for i in range(3))
    )
    rows = read_jsonl(path)
    assert [r["id"] for _, r in rows] == ["q0", "q1", "q2"] and [n for n, _ in rows] == [1, 2, 3]


def test_utf16_is_refused(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(json.dumps(_mcq(0)).encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16 text; save the file as UTF-8"):
        read_jsonl(path)


def test_long_questions_are_reported(tmp_path, tiny_model_dir):
    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"seq_len": 64})
    data = tmp_path / "data"
    _write(data / "mcq.jsonl", [_mcq(0, question="x" * 200), _mcq(1, question="y" * 100), _mcq(2)])
    report = preflight_run(load_config(cfg))
    assert report.errors == []
    [warning] = [w for w in report.warnings if w.startswith("evaluate.mcq")]
    # byte tokenizer: "Question: xxx..\nAnswer:" is 218 tokens, the longest option 5; the
    # scorer keeps the last 64 + 1 - 5 = 60 tokens of the question: 158 lost, and 58 of "y" * 100
    assert "2 of 3 items are longer than evaluate.seq_len=64 tokens" in warning
    assert "loses up to 158 tokens (median 108)" in warning


def test_long_responses_are_reported_and_prompts_without_room_refused(tmp_path, tiny_model_dir):
    cfg = write_run_config(
        tmp_path, tiny_model_dir, recover={"seq_len": 32, "data": str(tmp_path / "inst.jsonl")}
    )
    _write(
        tmp_path / "inst.jsonl",
        [
            {"prompt": "Define fever.", "response": "r" * 40},
            {"prompt": "Define rash.", "response": "ok"},
        ],
    )
    report = preflight_run(load_config(cfg))
    [warning] = [w for w in report.warnings if w.startswith("recover.data")]
    assert (
        "1 of 2 records are longer than recover.seq_len=32 tokens; their response loses up to 23 tokens"
        in warning
    )
    _write(tmp_path / "inst.jsonl", [{"prompt": "p" * 40, "response": "ok"}])
    [error] = preflight_run(load_config(cfg)).errors
    assert (
        "inst.jsonl:1: prompt is 41 tokens, no room for the response within recover.seq_len=32"
        in error
    )


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("evaluate.mcq", "gs://Bad_Bucket/mcq.jsonl", "invalid bucket name 'Bad_Bucket'"),
        ("evaluate.mcq", "gs://bucket", "names a bucket, not a file"),
        ("evaluate.perplexity", "s3://bucket/t.jsonl", "unsupported scheme"),
        ("model.source", "vertex://projects/p/models/1", "malformed Vertex model URI"),
        ("model.source", "hf://meta/llama", "unsupported scheme"),
    ],
)
def test_malformed_uris(tmp_path, tiny_model_dir, field, value, match):
    section, key = field.split(".")
    cfg = write_run_config(tmp_path, tiny_model_dir, **{section: {key: value}})
    errors = _errors(cfg)
    assert any(e.startswith(f"{field}: ") and match in e for e in errors), errors


def test_missing_local_files(tmp_path, tiny_model_dir):
    cfg = write_run_config(
        tmp_path,
        tiny_model_dir,
        evaluate={"mcq": str(tmp_path / "nope.jsonl")},
        model={"source": str(tmp_path / "no-model")},
    )
    errors = _errors(cfg)
    assert any(
        e.startswith("evaluate.mcq: ") and "nope.jsonl: data file not found" in e for e in errors
    )
    assert any(e.startswith("model.source: ") and "model directory not found" in e for e in errors)


def test_pubmedqa_release_read_in_full(tmp_path, tiny_model_dir):
    records = {
        str(pubid): {
            "QUESTION": f"Does drug {pubid} help?",
            "CONTEXTS": ["A trial."],
            "final_decision": "yes",
        }
        for pubid in (101, 102, 103)
    }
    records["103"]["final_decision"] = "perhaps"
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps(records, indent=1))
    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"mcq": str(path), "max_items": 1})
    [error] = _errors(cfg)
    assert (
        error.startswith("evaluate.mcq: ")
        and "ori_pqal.json" in error
        and "103" in error
        and "perhaps" in error
    )
    path.write_bytes(path.read_bytes().replace(b"A trial.", b"A caf\xe9 trial."))
    [error] = _errors(cfg)
    assert error.startswith("evaluate.mcq: ") and "not UTF-8 text (byte 0xe9" in error


def test_extra_mcq_sources_and_visit_notes_are_read_in_full(tmp_path, tiny_model_dir):
    extra = tmp_path / "extra.jsonl"
    _write(extra, [_mcq(0), _mcq(1), _mcq(2, options=["a", "b", "a"])])
    notes = tmp_path / "notes.jsonl"
    dialogue = "[doctor] how are you\n[patient] " + "tired " * 100
    _write(
        notes,
        [
            {"id": "n1", "input": "[doctor] hi\n[patient] cough", "reference": "Cough."},
            {"id": "n2", "input": dialogue, "reference": "Fatigue."},
        ],
    )
    cfg = write_run_config(
        tmp_path,
        tiny_model_dir,
        evaluate={
            "mcq_sources": [{"name": "extra", "data": str(extra), "max_items": 1}],
            "visit_notes": {"data": str(notes), "prompt_style": "plain", "max_input_tokens": 600},
        },
    )
    report = preflight_run(load_config(cfg))
    [error] = report.errors
    assert (
        error.startswith("evaluate.mcq_sources.0.data: ")
        and "extra.jsonl:3: field 'options' options 0 and 2" in error
    )
    [warning] = [w for w in report.warnings if w.startswith("evaluate.visit_notes.data")]
    assert "1 of 2 dialogues are longer than evaluate.visit_notes.max_input_tokens=600" in warning
    _write(
        notes,
        [
            {"id": "n1", "input": "[doctor] hi", "reference": "Cough."},
            {"id": "n1", "input": "x", "reference": "y"},
        ],
    )
    errors = preflight_run(load_config(cfg)).errors
    assert any(e.startswith("evaluate.visit_notes.data: ") and "n1" in e for e in errors), errors


def test_evaluate_stage_reports_what_it_cuts(tmp_path, tiny_model_dir):
    """gs:// data is not read by the preflight: the evaluate stage says what it truncates."""
    from medprune.evaluate.stage import stage_evaluate

    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"seq_len": 64, "perplexity": None})
    _write(tmp_path / "data" / "mcq.jsonl", [_mcq(0, question="x" * 200), _mcq(1)])
    lines = []
    results = stage_evaluate(
        load_config(cfg), tiny_model_dir, tmp_path / "eval", label="baseline", progress=lines.append
    )
    assert results["mcq"]["n"] == 2
    [warning] = [line for line in lines if "warning" in line]
    assert (
        warning.startswith("[baseline] warning: evaluate.mcq ")
        and "1 of 2 items are longer than evaluate.seq_len=64" in warning
    )


def test_vertex_fuse_paths_are_remote(tmp_path, tiny_model_dir):
    """/gcs/BUCKET/... exists only inside Vertex AI's containers: shape-checked, not opened."""
    cfg = write_run_config(
        tmp_path, tiny_model_dir, evaluate={"mcq": "/gcs/my-bucket/data/mcq.jsonl"}
    )
    report = preflight_run(load_config(cfg))
    assert report.errors == []
    assert any(
        w.startswith("evaluate.mcq: /gcs/my-bucket/data/mcq.jsonl is remote")
        for w in report.warnings
    )
    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"mcq": "/gcs/Bad_Bucket/mcq.jsonl"})
    [error] = _errors(cfg)
    assert error.startswith("evaluate.mcq: ") and "invalid bucket name 'Bad_Bucket'" in error


def test_shipped_vertex_examples_validate(monkeypatch):
    from pathlib import Path

    from medprune.cli import main

    # the examples take project and bucket from `terraform output medprune_env`
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "clinical-prod-1")
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "us-central1")
    monkeypatch.setenv("MEDPRUNE_BUCKET", "medprune-prod-clinical-prod-1")
    root = Path(__file__).resolve().parents[2]
    for name in ("dev.yaml", "prod.yaml"):
        assert main(["validate", str(root / "examples" / name)]) == 0


def test_recovery_sequences_longer_than_the_context_are_refused(tmp_path, tiny_model_dir):
    cfg = write_run_config(
        tmp_path,
        tiny_model_dir,
        recover={"seq_len": 1024, "teacher_data": {"sequences": 4}},
    )
    errors = _errors(cfg)
    assert any(
        e.startswith("recover.seq_len: 1024 tokens per sequence (and every recover.teacher_data")
        and "context of 512 tokens" in e
        for e in errors
    ), errors


def test_teacher_openings_file_is_checked_before_any_work(tmp_path, tiny_model_dir):
    openings = tmp_path / "openings.jsonl"
    openings.write_text(
        json.dumps({"text": "The patient"}) + "\n" + json.dumps({"txt": "x"}) + "\n"
    )
    cfg = write_run_config(
        tmp_path, tiny_model_dir, recover={"teacher_data": {"openings": str(openings)}}
    )
    errors = _errors(cfg)
    assert any(
        e.startswith("recover.teacher_data.openings:")
        and "openings.jsonl:2: missing field 'text'" in e
        for e in errors
    ), errors
    openings.write_text(json.dumps({"text": "The patient"}) + "\n")
    report = preflight_run(load_config(cfg))
    assert report.errors == []
    assert "recover.teacher_data.openings: 1 openings" in report.checked
