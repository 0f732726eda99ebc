"""Visit-note summarization: prompts (chat template, front truncation), metrics (ROUGE,
sections, hallucination and omission), and the whole evaluation on real ACI-BENCH and
PubMedQA items with a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.config import (
    DEFAULT_NOTE_INSTRUCTION,
    EvaluateConfig,
    MCQSourceConfig,
    VisitNotesConfig,
)
from medprune.data.licensed import licensed_path
from medprune.errors import DataError
from medprune.evaluate.concepts import (
    ConceptVocabulary,
    hpo_vocabulary,
    item_concepts,
    medications,
    quantities,
    spoken_numbers_to_digits,
)
from medprune.evaluate.metrics import metric_values
from medprune.evaluate.note_formats import VisitNoteItem, load_visit_notes
from medprune.evaluate.runner import (
    NOTES_FILE,
    evaluate_model,
    read_predictions,
    source_predictions_file,
)
from medprune.evaluate.summarization import (
    build_note_prompts,
    name_speakers,
    note_sections,
    rouge_scores,
    score_note,
    score_visit_notes,
)
from medprune.load.model import save_model

from tests.helpers.tiny import byte_tokenizer, tiny_llama

ACI_VALID = licensed_path("aci_valid")
PUBMEDQA = licensed_path("pubmedqa_dev")  # the bundled copy of the release
CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
VOCAB = ConceptVocabulary.from_terms(
    ["Hypertension", "Asthma", "Fatigue", "Shortness of breath", "Pain"], "test"
)


def chat_tokenizer():
    tok = byte_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture
def chat_model_dir(tmp_path) -> Path:
    return save_model(tiny_llama(), chat_tokenizer(), tmp_path / "tiny-chat")


def test_sections_of_real_reference_notes_and_generated_headings():
    items = load_visit_notes(ACI_VALID)
    first = note_sections(items[0].reference)
    assert {
        "chief_complaint",
        "history_of_present_illness",
        "review_of_systems",
        "results",
        "assessment_and_plan",
    } <= first
    assert all(
        note_sections(i.reference) for i in items
    )  # every ACI note has recognisable sections
    generated = "**Chief Complaint:** knee pain\n\n## History of Present Illness\nHe fell.\nPlan: ice.\nThe plan is rest."
    assert note_sections(generated) == {
        "chief_complaint",
        "history_of_present_illness",
        "assessment_and_plan",
    }


def test_rouge_scores():
    same = rouge_scores(
        "The patient has knee pain.\nPlan: ice.", "The patient has knee pain.\nPlan: ice."
    )
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeLsum": 1.0}
    assert rouge_scores("completely unrelated words", "knee pain after a fall")["rouge1"] == 0.0


def test_quantities_medications_and_spoken_numbers():
    assert (
        spoken_numbers_to_digits("twenty five milligrams and one hundred units")
        == "25 milligrams and 100 units"
    )
    assert quantities("Lisinopril twenty milligrams; weight up 4 pounds, temp 97.20 degrees") == {
        "20 mg",
        "4 lb",
        "97.2 degrees",
    }
    assert medications("continue lisinopril 20 mg and Lasix 40 mg daily; take it 2 mg") == {
        "lisinopril",
        "lasix",
    }


def test_hallucination_and_omission_rates():
    dialogue = "[doctor] your hypertension is fine on lisinopril twenty milligrams .\n[patient] i feel some fatigue ."
    reference = "ASSESSMENT AND PLAN\nHypertension: continue lisinopril 20 mg. Fatigue."
    note = "ASSESSMENT AND PLAN\nHypertension on lisinopril 20 mg. Asthma: start metformin 500 mg."
    c = item_concepts(note, dialogue, reference, VOCAB)
    assert c.unsupported == ["med:metformin", "qty:500 mg", "term:asthma"]
    assert c.hallucination_rate == pytest.approx(3 / 6)
    assert c.omitted == ["term:fatigue"] and c.omission_rate == pytest.approx(1 / 4)
    scored = score_note(VisitNoteItem("v1", dialogue, reference), note, VOCAB)
    assert scored["faithfulness"] == pytest.approx(0.5) and scored["section_coverage"] == 1.0
    assert scored["reference_hallucination_rate"] == 0.0


def test_hpo_vocabulary_finds_concepts_in_a_real_visit():
    vocab = hpo_vocabulary()
    assert "HPO" in vocab.source and len(vocab.phrases) > 10_000
    item = load_visit_notes(ACI_VALID, 1)[0]
    c = item_concepts(item.reference, item.dialogue, item.reference, vocab)
    assert {"term:hypertension", "med:lisinopril", "qty:20 mg"} <= c.dialogue
    assert c.omission_rate == 0.0  # the reference against itself omits nothing
    assert 0.0 < c.hallucination_rate < 0.5  # clinicians' paraphrase the proxy cannot see


def test_prompts_use_the_chat_template_and_cut_long_dialogues_from_the_front():
    tok = chat_tokenizer()
    items = [
        VisitNoteItem("short", "[doctor] hi\n[patient] hello", "note"),
        VisitNoteItem(
            "long",
            "\n".join(f"[patient] turn {i} " + "x" * 40 for i in range(40))
            + "\n[doctor] final plan",
            "note",
        ),
    ]
    warned: list[str] = []
    with pytest.warns(UserWarning, match=r"record 'long': dialogue cut from the front"):
        prompts = build_note_prompts(
            tok, items, instruction="Write the note.", max_input_tokens=600, warn=warned.append
        )
    short, long = prompts
    # default: transcript first (turn tags as names), the instruction after it
    assert short.text == (
        '<s>user: Visit transcript:\n"""\nDoctor: hi\nPatient: hello\n"""\n\nWrite the note.\nassistant: '
    )
    assert short.truncated_tokens == 0 and len(short.token_ids) == len(short.text.encode()) - 2
    assert long.truncated_tokens > 0 and len(long.token_ids) <= 600
    # the end of the visit and the instruction after it are kept
    assert long.text.endswith('Doctor: final plan\n"""\n\nWrite the note.\nassistant: ')
    assert '"""\nPatient: turn' in long.text  # starts at a whole turn
    assert len(warned) == 1 and f"by {long.truncated_tokens} of " in warned[0]


def test_instruction_before_the_dialogue_and_speaker_tags_as_is():
    items = [VisitNoteItem("short", "[doctor] hi\n[patient_guest] hello", "note")]
    before = build_note_prompts(
        chat_tokenizer(),
        items,
        instruction="Write the note.",
        instruction_position="before",
        speaker_labels="as-is",
        max_input_tokens=600,
    )
    assert (
        before[0].text
        == "<s>user: Write the note.\n\n[doctor] hi\n[patient_guest] hello\nassistant: "
    )
    named = build_note_prompts(
        chat_tokenizer(), items, instruction="Write.", prompt_style="chat", max_input_tokens=600
    )
    assert "Doctor: hi\nPatient guest: hello" in named[0].text
    assert name_speakers("[doctor] a [patient] b\n  [x] c") == "Doctor: a [patient] b\n  [x] c"


@pytest.mark.parametrize(
    ("kwargs", "items", "message"),
    [
        (
            {"truncate": False},
            [VisitNoteItem("D9-aci", "[doctor] " + "y" * 900, "n")],
            r"notes\.json: record 'D9-aci': field 'src' makes a prompt of \d+ tokens, over evaluate\.visit_notes\.max_input_tokens \(300\), and truncation is off",
        ),
        ({}, [VisitNoteItem("D1-aci", "   ", "n")], r"record 'D1-aci': field 'src' is empty"),
        (
            {"instruction": "z" * 400},
            [VisitNoteItem("a", "b", "c")],
            r"leaving -?\d+ of evaluate\.visit_notes\.max_input_tokens",
        ),
    ],
)
def test_bad_prompts_are_refused_naming_record_and_field(kwargs, items, message):
    args = {
        "instruction": "Write the note.",
        "max_input_tokens": 300,
        "source": "notes.json",
        **kwargs,
    }
    with pytest.raises(DataError, match=message):
        build_note_prompts(chat_tokenizer(), items, **args)


def test_a_model_without_chat_template_is_refused_or_prompted_plainly():
    items = [VisitNoteItem("a", "[doctor] hi", "n")]
    with pytest.raises(
        DataError, match=r"no chat template; set evaluate\.visit_notes\.prompt_style: plain"
    ):
        build_note_prompts(byte_tokenizer(), items, instruction="Write.", max_input_tokens=300)
    plain = build_note_prompts(
        byte_tokenizer(), items, instruction="Write.", prompt_style="plain", max_input_tokens=300
    )
    assert plain[0].text == 'Visit transcript:\n"""\nDoctor: hi\n"""\n\nWrite.\n\nCLINICAL NOTE:\n'


def test_score_visit_notes_on_real_dialogues_with_a_tiny_model():
    items = load_visit_notes(ACI_VALID, 2)
    tok = chat_tokenizer()
    prompts = build_note_prompts(
        tok, items, instruction=DEFAULT_NOTE_INSTRUCTION, max_input_tokens=480
    )
    res = score_visit_notes(
        tiny_llama(), tok, items, prompts, VOCAB, max_new_tokens=8, batch_size=2
    )
    assert res.n == 2 and res.truncated_items == 2 and res.max_new_tokens == 8
    rows = res.predictions
    assert [r["id"] for r in rows] == [i.id for i in items]
    for r in rows:
        assert 0 < r["new_tokens"] <= 8 and r["truncated_tokens"] > 0
        assert r["rouge1"] == pytest.approx(rouge_scores(r["prediction"], r["reference"])["rouge1"])
    assert res.rougeLsum == pytest.approx(sum(r["rougeLsum"] for r in rows) / 2)
    assert res.hallucination_rate == pytest.approx(sum(r["hallucination_rate"] for r in rows) / 2)


def test_evaluate_model_with_pubmedqa_source_and_visit_notes(tmp_path, chat_model_dir):
    cfg = EvaluateConfig(
        mcq_sources=[MCQSourceConfig(name="pubmedqa", data=str(PUBMEDQA), max_items=6)],
        visit_notes=VisitNotesConfig(
            data=str(ACI_VALID), max_items=2, max_new_tokens=6, max_input_tokens=480, batch_size=2
        ),
        seq_len=512,
        latency_seq_len=8,
        latency_repeats=1,
    )
    out = tmp_path / "eval"
    res = evaluate_model(chat_model_dir, cfg, out, label="baseline", progress=lambda _: None)
    assert res["complete"]
    pubmed = res["mcq_sources"]["pubmedqa"]
    preds = read_predictions(out, source_predictions_file("pubmedqa"))
    assert [p["id"] for p in preds] == list(json.loads(PUBMEDQA.read_text()))[:6]
    classes = pubmed["classes"]
    assert classes["labels"] == ["yes", "no", "maybe"] and sum(map(sum, classes["confusion"])) == 6
    assert (
        classes["majority_baseline"]
        == max(sum(p["answer"] == k for p in preds) for k in range(3)) / 6
    )
    notes = read_predictions(out, NOTES_FILE)
    assert [n["id"] for n in notes] == ["D2N068-virtassist", "D2N069-virtassist"]
    assert res["visit_notes"]["vocabulary"].startswith("HPO")
    values = metric_values(res)
    assert (
        values["accuracy@pubmedqa"] == pubmed["acc"]
        and values["macro_f1@pubmedqa"] == classes["macro_f1"]
    )
    assert values["rougeLsum"] == res["visit_notes"]["rougeLsum"] and "hallucination_rate" in values
    settings = res["settings"]
    assert (
        "data" not in settings["visit_notes"]
        and len(settings["visit_notes"]["prompts_sha256"]) == 64
    )
    assert settings["mcq_sources"][0]["data_sha256"] and "data" not in settings["mcq_sources"][0]


def test_bad_visit_notes_fail_before_the_model_loads(tmp_path):
    bad = tmp_path / "aci.json"
    bad.write_text(json.dumps({"data": [{"src": "[doctor] hi", "file": "D1-aci"}]}))
    no_model = tmp_path / "missing-model"
    cfg = EvaluateConfig(visit_notes=VisitNotesConfig(data=str(bad)))
    with pytest.raises(
        DataError, match=r"aci\.json:1: record 0 \(file 'D1-aci'\): missing field 'tgt'"
    ):
        evaluate_model(no_model, cfg, tmp_path / "eval", label="baseline", progress=lambda _: None)
    long = tmp_path / "long.jsonl"
    long.write_text(
        json.dumps({"id": "v1", "input": "[doctor] " + "word " * 3000, "reference": "note"}) + "\n"
    )
    model_dir = save_model(tiny_llama(), chat_tokenizer(), tmp_path / "m")
    (model_dir / "model.safetensors").unlink()  # the model cannot load: the error must come first
    cfg = EvaluateConfig(
        visit_notes=VisitNotesConfig(data=str(long), truncate=False, max_input_tokens=512)
    )
    with pytest.raises(
        DataError, match=r"long\.jsonl: record 'v1': field 'input' makes a prompt of \d+ tokens"
    ):
        evaluate_model(
            model_dir, cfg, tmp_path / "eval2", label="baseline", progress=lambda _: None
        )
    assert not (tmp_path / "eval2").exists()
