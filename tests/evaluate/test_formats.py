"""Every supported multiple-choice format parses; malformed items name file, line and field."""

from __future__ import annotations

import json

import pytest

from medprune.errors import DataError
from medprune.evaluate.formats import detect_format, load_mcq


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_medprune_format(tmp_path):
    path = _write(
        tmp_path / "ours.jsonl",
        [
            {
                "id": "dose-1",
                "question": "Max daily paracetamol dose?",
                "options": ["4 g", "40 g"],
                "answer": 0,
                "category": "dosing",
            },
            {
                "question": "Antidote for opioids?",
                "options": ["naloxone", "atropine", "glucagon"],
                "answer": "B",
            },
            {"question": "Vitamin for scurvy?", "options": ["C", "D"], "answer": "D"},
        ],
    )
    items = load_mcq(path)
    assert [i.id for i in items] == ["dose-1", "ours-2", "ours-3"]
    assert [i.answer for i in items] == [
        0,
        1,
        1,
    ]  # index, letter, and letter 'D' that is also option text
    assert items[0].category == "dosing" and items[1].category == "all"
    assert items[0].context == "Question: Max daily paracetamol dose?\nAnswer:"
    assert items[1].options == ("naloxone", "atropine", "glucagon")


def test_medqa_format(tmp_path):
    path = _write(
        tmp_path / "medqa.jsonl",
        [
            {
                "question": "A 23-year-old woman ... Which drug?",
                "options": {
                    "A": "Ampicillin",
                    "B": "Ceftriaxone",
                    "C": "Doxycycline",
                    "D": "Nitrofurantoin",
                },
                "answer": "Nitrofurantoin",
                "answer_idx": "D",
                "meta_info": "step1",
            },
            {"question": "Which is first line?", "options": {"A": "x", "B": "y"}, "answer": "y"},
        ],
    )
    items = load_mcq(path)
    assert [i.answer for i in items] == [3, 1]
    assert items[0].category == "step1" and len(items[0].options) == 4
    assert detect_format(json.loads(path.read_text().splitlines()[0])) == "medqa"


def test_medmcqa_format_both_cop_bases(tmp_path):
    rec = {
        "id": "m1",
        "question": "Drug of choice?",
        "opa": "a1",
        "opb": "b1",
        "opc": "c1",
        "opd": "d1",
        "cop": 2,
        "subject_name": "Pharmacology",
    }
    path = _write(tmp_path / "medmcqa.jsonl", [rec])
    assert load_mcq(path)[0].answer == 2
    assert load_mcq(path, cop_base=1)[0].answer == 1
    assert load_mcq(path)[0].category == "Pharmacology"
    bad = _write(tmp_path / "bad.jsonl", [dict(rec, cop=4)])
    with pytest.raises(
        DataError, match=r"bad\.jsonl:1: field 'cop' must be the right option as 0-3, got 4"
    ):
        load_mcq(bad)


def test_pubmedqa_format(tmp_path):
    path = _write(
        tmp_path / "pubmedqa.jsonl",
        [
            {
                "pubid": 123,
                "question": "Does X reduce Y?",
                "context": {"contexts": ["Background.", "Results."]},
                "final_decision": "yes",
            },
            {"question": "Is A linked to B?", "context": "An abstract.", "final_decision": "Maybe"},
        ],
    )
    items = load_mcq(path)
    assert items[0].id == "123"
    assert items[0].options == ("yes", "no", "maybe")
    assert [i.answer for i in items] == [0, 2]
    assert (
        items[0].context == "Abstract: Background.\nResults.\nQuestion: Does X reduce Y?\nAnswer:"
    )
    assert items[0].category == "pubmedqa"


@pytest.mark.parametrize(
    ("record", "fmt", "message"),
    [
        (
            {"question": "q", "options": ["a"], "answer": 0},
            "auto",
            r"x\.jsonl:2: field 'options' must be a list of at least 2",
        ),
        (
            {"question": "q", "options": ["a", ""], "answer": 0},
            "auto",
            r"x\.jsonl:2: field 'options' option 1 must be a non-empty",
        ),
        (
            {"question": "q", "options": ["a", "b"], "answer": 5},
            "auto",
            r"x\.jsonl:2: field 'answer' 5 is out of range for 2",
        ),
        ({"question": "q", "options": ["a", "b"]}, "auto", r"x\.jsonl:2: missing field 'answer'"),
        (
            {"question": "", "options": ["a", "b"], "answer": 0},
            "auto",
            r"x\.jsonl:2: field 'question' is empty",
        ),
        (
            {"question": "q", "options": ["a", "b"], "answer": 0, "category": 7},
            "auto",
            r"x\.jsonl:2: field 'category' must be a non-empty string",
        ),
        (
            {"question": "q", "options": {"A": "a", "C": "c"}, "answer": "A"},
            "medqa",
            r"x\.jsonl:2: field 'options' letters must run A, B",
        ),
        (
            {"question": "q", "opa": "a", "opb": "b", "opc": "c", "cop": 0},
            "medmcqa",
            r"x\.jsonl:2: missing field 'opd'",
        ),
        (
            {"question": "q", "context": "c", "final_decision": "perhaps"},
            "pubmedqa",
            r"x\.jsonl:2: field 'final_decision' must be one of",
        ),
    ],
)
def test_malformed_item_names_file_line_and_field(tmp_path, record, fmt, message):
    first = {
        "auto": {"question": "ok", "options": ["a", "b"], "answer": 0},
        "medqa": {"question": "ok", "options": {"A": "a", "B": "b"}, "answer": "A"},
        "medmcqa": {"question": "ok", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0},
        "pubmedqa": {"question": "ok", "context": "c", "final_decision": "no"},
    }[fmt]
    path = _write(tmp_path / "x.jsonl", [first, record])
    with pytest.raises(DataError, match=message):
        load_mcq(path, fmt=fmt)


def test_duplicate_ids_and_undetectable_format(tmp_path):
    dup = _write(
        tmp_path / "dup.jsonl",
        [{"id": "a", "question": "q", "options": ["x", "y"], "answer": 0}] * 2,
    )
    with pytest.raises(
        DataError, match=r"dup\.jsonl:2: field 'id' duplicate id 'a' \(first on line 1\)"
    ):
        load_mcq(dup)
    unknown = _write(tmp_path / "u.jsonl", [{"prompt": "q", "choices": ["x"]}])
    with pytest.raises(DataError, match=r"u\.jsonl:1: cannot tell the multiple-choice format"):
        load_mcq(unknown)


def test_max_items(tmp_path):
    path = _write(
        tmp_path / "m.jsonl",
        [{"question": f"q{i}", "options": ["x", "y"], "answer": i % 2} for i in range(5)],
    )
    assert len(load_mcq(path, 3)) == 3
