"""PubMedQA and ACI-BENCH read as released, on real items of the bundled copies; bad records
name file, record and field."""

from __future__ import annotations

import json

import pytest

from medprune.data.licensed import licensed_path
from medprune.errors import DataError
from medprune.evaluate.formats import PUBMEDQA_OPTIONS, load_mcq
from medprune.evaluate.note_formats import detect_note_format, load_visit_notes

PUBMEDQA = licensed_path("pubmedqa_dev")  # the bundled copy of the release
ACI_VALID = licensed_path("aci_valid")


def harness_pubmedqa_doc_to_text(doc: dict) -> str:
    """lm-evaluation-harness ``lm_eval/tasks/pubmedqa/preprocess_pubmedqa.py`` (0.4),
    ``doc_to_text``, as documented there, on the Hugging Face ``pubmed_qa`` record shape."""
    ctxs = "\n".join(doc["context"]["contexts"])
    return "Abstract: {}\nQuestion: {}\nAnswer:".format(ctxs, doc["question"])


def test_pubmedqa_release_file_reads_every_item_keyed_by_pubmed_id():
    raw = json.loads(PUBMEDQA.read_text(encoding="utf-8"))
    items = load_mcq(PUBMEDQA)  # format auto-detected from the file
    assert len(items) == len(raw) == 500
    assert [i.id for i in items] == list(raw)
    counts = {o: sum(PUBMEDQA_OPTIONS[i.answer] == o for i in items) for o in PUBMEDQA_OPTIONS}
    assert counts == {"yes": 276, "no": 169, "maybe": 55}  # as the bundled SOURCE.md says
    assert all(i.options == ("yes", "no", "maybe") for i in items)
    assert load_mcq(PUBMEDQA, 7, fmt="pubmedqa") == items[:7]


@pytest.mark.parametrize("index", [0, 1, 250, 499])
def test_pubmedqa_prompt_is_the_harness_template(index):
    raw = json.loads(PUBMEDQA.read_text(encoding="utf-8"))
    pubid = list(raw)[index]
    rec = raw[pubid]
    hf_doc = {
        "question": rec["QUESTION"],
        "context": {"contexts": rec["CONTEXTS"]},
        "final_decision": rec["final_decision"],
    }
    item = {i.id: i for i in load_mcq(PUBMEDQA)}[pubid]
    assert item.context == harness_pubmedqa_doc_to_text(hf_doc)
    assert "\n".join(rec["CONTEXTS"]) in item.context  # sections joined by newlines, verbatim
    assert item.answer == PUBMEDQA_OPTIONS.index(rec["final_decision"])


def test_pubmedqa_jsonl_gives_the_same_prompt_as_the_release(tmp_path):
    raw = json.loads(PUBMEDQA.read_text(encoding="utf-8"))
    first = list(raw)[:3]
    path = tmp_path / "pubmedqa.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "pubid": int(k),
                    "question": raw[k]["QUESTION"],
                    "context": {"contexts": raw[k]["CONTEXTS"]},
                    "final_decision": raw[k]["final_decision"],
                }
            )
            + "\n"
            for k in first
        )
    )
    ours = load_mcq(path)
    release = load_mcq(PUBMEDQA, 3)
    assert [(i.id, i.context, i.answer) for i in ours] == [
        (i.id, i.context, i.answer) for i in release
    ]


def test_pubmedqa_release_bad_records_name_file_record_and_field(tmp_path):
    good = {
        "QUESTION": "Does X help?",
        "CONTEXTS": ["Background.", "Results."],
        "final_decision": "yes",
    }
    path = tmp_path / "ori_pqal.json"
    path.write_text(
        json.dumps({"111": good, "222": dict(good, final_decision="perhaps")}, indent=1)
    )
    with pytest.raises(
        DataError,
        match=r"ori_pqal\.json:10: record '222': field 'final_decision' must be one of \['yes', 'no', 'maybe'\], got 'perhaps'",
    ):
        load_mcq(path)
    path.write_text(json.dumps({"111": good, "222": {"CONTEXTS": ["c"], "final_decision": "no"}}))
    with pytest.raises(DataError, match=r"record '222': missing field 'QUESTION'"):
        load_mcq(path, fmt="pubmedqa")
    path.write_text(json.dumps({"111": dict(good, CONTEXTS=[])}))
    with pytest.raises(DataError, match=r"record '111': field 'CONTEXTS' must be a non-empty"):
        load_mcq(path)
    path.write_text(f'{{"111": {json.dumps(good)}, "111": {json.dumps(good)}}}')
    with pytest.raises(DataError, match=r"record '111' appears twice"):
        load_mcq(path)


def test_aci_bench_valid_reads_as_released():
    raw = json.loads(ACI_VALID.read_text(encoding="utf-8"))["data"]
    items = load_visit_notes(ACI_VALID)
    assert detect_note_format(ACI_VALID) == "aci"
    assert len(items) == len(raw) == 20
    assert [i.id for i in items] == [r["file"] for r in raw]
    assert items[0].dialogue == raw[0]["src"] and items[0].reference == raw[0]["tgt"]
    assert items[0].dialogue.startswith("[doctor]")
    assert {i.category for i in items} == {"aci", "virtassist", "virtscribe"}
    assert len(load_visit_notes(ACI_VALID, 4)) == 4


def test_note_jsonl_format(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "v1",
                "input": "[doctor] any pain?\n[patient] my knee.",
                "reference": "CHIEF COMPLAINT\n\nKnee pain.",
            }
        )
        + "\n"
        + json.dumps(
            {"input": "[doctor] hello", "reference": "CC: follow-up", "category": "clinic"}
        )
        + "\n"
    )
    items = load_visit_notes(path)
    assert [(i.id, i.category) for i in items] == [("v1", "all"), ("notes-2", "clinic")]
    assert items[0].reference.startswith("CHIEF COMPLAINT")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"tgt": "note", "file": "D1-aci"}, r"record 1 \(file 'D1-aci'\): missing field 'src'"),
        (
            {"src": "[doctor] hi", "file": "D1-aci"},
            r"record 1 \(file 'D1-aci'\): missing field 'tgt'",
        ),
        (
            {"src": " \n ", "tgt": "note", "file": "D1-aci"},
            r"record 1 \(file 'D1-aci'\): field 'src' is empty",
        ),
        (
            {"src": "[doctor] hi", "tgt": ["note"], "file": "D1-aci"},
            r"record 1 \(file 'D1-aci'\): field 'tgt' must be a string, got list",
        ),
        (
            {"src": "[doctor] hi", "tgt": "note", "file": "D0-aci"},
            r"record 1 \(file 'D0-aci'\): field 'file' duplicate id 'D0-aci' \(first in record 0\)",
        ),
    ],
)
def test_aci_bad_records_name_file_record_and_field(tmp_path, record, message):
    path = tmp_path / "aci.json"
    path.write_text(
        json.dumps(
            {"data": [{"src": "[doctor] hi", "tgt": "note", "file": "D0-aci"}, record]}, indent=4
        )
    )
    with pytest.raises(DataError, match=r"aci\.json:\d+: " + message):
        load_visit_notes(path)


def test_note_files_that_are_not_notes(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text('{"data": []}')
    with pytest.raises(DataError, match=r"empty\.json: field 'data' is empty"):
        load_visit_notes(empty)
    jsonl = tmp_path / "n.jsonl"
    jsonl.write_text(json.dumps({"input": "[doctor] hi"}) + "\n")
    with pytest.raises(DataError, match=r"n\.jsonl:1: missing field 'reference'"):
        load_visit_notes(jsonl)
    with pytest.raises(DataError, match=r"unknown visit-note format 'csv'"):
        load_visit_notes(jsonl, fmt="csv")  # type: ignore[arg-type]
