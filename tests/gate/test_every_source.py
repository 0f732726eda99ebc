"""The gate over every clinical source together: Holm across sources, uninformative
sources, independence of the training text, and declared sources against data cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.config import GateConfig, RunConfig
from medprune.data.cards import DataCard
from medprune.errors import DataError
from medprune.gate.decision import decide, source_table
from medprune.gate.sources import (
    certification_files,
    check_declared_sources,
    family_gate,
    independence_report,
    resolve_source,
)


def _preds(correct: list[bool], *, options: int = 4, answers=None) -> list[dict]:
    answers = answers or [k % options for k in range(len(correct))]
    return [
        {
            "id": f"q{k}",
            "answer": a,
            "options": [f"o{i}" for i in range(options)],
            "correct": c,
            "correct_norm": c,
        }
        for k, (c, a) in enumerate(zip(correct, answers, strict=True))
    ]


def _pair(n: int, dense_right: int, lost: int, gained: int, **kw):
    base = [k < dense_right for k in range(n)]
    cand = list(base)
    for k in range(lost):
        cand[k] = False
    for k in range(gained):
        cand[dense_right + k] = True
    return _preds(base, **kw), _preds(cand, **kw)


RESULTS = {"complete": True}
NI = {"margin": 0.1, "confidence": 0.9, "method": "mcnemar", "min_items": 30}


def _decide(builtin, sources: dict, **kw):
    cfg = GateConfig(non_inferiority=NI, source_non_inferiority={s: NI for s in sources})
    return decide(
        RESULTS,
        RESULTS,
        cfg,
        baseline_predictions=builtin[0],
        candidate_predictions=builtin[1],
        baseline_sources={s: p[0] for s, p in sources.items()},
        candidate_sources={s: p[1] for s, p in sources.items()},
        **kw,
    )


def test_a_candidate_that_passes_the_built_in_set_but_fails_an_independent_source_fails():
    builtin = _pair(300, 210, 5, 5)  # difference 0: passes alone
    wordnet = _pair(300, 150, 60, 10)  # -0.167: fails
    d = _decide(
        builtin, {"wordnet-medical": wordnet}, independent={"mcq": False, "wordnet-medical": True}
    )
    by = {v.name: v for v in d.sources}
    assert by["mcq"].status == "passed" and by["wordnet-medical"].status == "failed"
    assert not d.passed
    assert any("non-inferiority on wordnet-medical" in r and "NOT shown" in r for r in d.reasons)
    # two informative sources: Holm levels alpha / 2 (smaller p) and alpha
    assert d.holm["alpha"] == pytest.approx(0.05)
    assert by["mcq"].level == pytest.approx(0.025) and by["wordnet-medical"].level == pytest.approx(
        0.05
    )
    # each interval is shown at the confidence its level gives
    assert by["mcq"].interval["confidence"] == pytest.approx(0.95)
    assert d.interval == by["mcq"].interval


def test_passing_everywhere_passes_and_the_table_shows_every_source():
    d = _decide(_pair(300, 210, 5, 5), {"wordnet-medical": _pair(300, 150, 6, 6)})
    assert d.passed, d.reasons
    lines = source_table(d.to_dict())
    assert len(lines) == 3 and "wordnet-medical" in lines[2] and "passed" in lines[2]


def test_holm_can_fail_a_source_whose_own_interval_passes_alone():
    # each p-value is between alpha / 2 and alpha: alone each passes at 0.05, together
    # the smaller must pass at 0.025 first, and it does not
    builtin = _pair(200, 140, 20, 8)
    other = _pair(200, 140, 20, 8)
    alone = _decide(builtin, {})
    assert alone.passed and 0.025 < alone.sources[0].p_value <= 0.05
    d = _decide(builtin, {"other": other})
    assert not d.passed
    assert all(v.status == "failed" for v in d.sources)


def test_an_uninformative_source_is_reported_as_such_not_as_a_pass():
    # PubMedQA-like: 3 labels, 80% "no"; the dense model (0.55) is below always-"no"
    answers = [1] * 160 + [0] * 40
    pubmed = _pair(200, 110, 0, 0, options=3, answers=answers)
    d = _decide(_pair(300, 210, 5, 5), {"pubmedqa": pubmed})
    by = {v.name: v for v in d.sources}
    assert by["pubmedqa"].status == "uninformative" and by["pubmedqa"].p_value is None
    assert by["pubmedqa"].dense["baseline_kind"] == "majority"
    assert d.passed  # the built-in set is informative and passes
    assert d.holm["hypotheses"][0]["name"] == "mcq" and len(d.holm["hypotheses"]) == 1
    check = next(c for c in d.checks if c.name == "non_inferiority_pubmedqa")
    assert "UNINFORMATIVE" in check.message and check.details["status"] == "uninformative"
    # every source uninformative: nothing passes, and the message says why
    chance = _pair(300, 80, 0, 0)  # 0.27 on 4 options: crosses chance
    d2 = _decide(chance, {"pubmedqa": pubmed})
    assert not d2.passed
    assert any("no informative source" in r for r in d2.reasons)


def test_dependent_evidence_warns_in_the_gate_and_cannot_certify_a_search():
    builtin = _pair(300, 210, 5, 5)
    d = _decide(builtin, {}, independent={"mcq": False})
    assert d.passed and d.dependent_evidence
    assert d.warnings and "NOT independent" in d.warnings[0]
    s = _decide(builtin, {}, independent={"mcq": False}, require_independent=True)
    assert not s.passed
    assert any("independent of the recovery data" in r for r in s.reasons)
    # with an independent informative source that passes, the search may certify
    ok = _decide(
        builtin,
        {"wordnet-medical": _pair(300, 150, 6, 6)},
        independent={"mcq": False, "wordnet-medical": True},
        require_independent=True,
    )
    assert ok.passed and not ok.dependent_evidence


# ---------------------------------------------------------------- config, files and cards


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _mcq(path: Path, stem: str, n: int = 4) -> Path:
    return _jsonl(
        path,
        [
            {
                "id": f"{stem}{i}",
                "question": f"Question: which {stem} term number {i} fits?\nAnswer:",
                "options": ["alpha", "beta", "gamma", "delta"],
                "answer": i % 4,
            }
            for i in range(n)
        ],
    )


def _card(path: Path, source: str, generator: str, role: str, ids=()) -> None:
    DataCard.for_file(
        path,
        count=4,
        role=role,
        source=source,
        generator=generator,
        license="test",
        attribution="test",
        concept_ids=ids,
    ).save(path.parent)


def _cfg(tmp_path: Path, **evaluate) -> RunConfig:
    rec = _jsonl(tmp_path / "recovery.jsonl", [{"text": "Fever: raised body temperature."}])
    return RunConfig.model_validate(
        {
            "model": {"source": str(tmp_path / "model"), "name": "m"},
            "prune": {"method": "magnitude", "sparsity": 0.5},
            "recover": {"data": str(rec)},
            "evaluate": {"mcq": str(_mcq(tmp_path / "mcq.jsonl", "b")), **evaluate},
            "gate": {"non_inferiority": {"margin": 0.1}},
        }
    )


def test_sources_come_from_cards_declarations_or_the_file_name(tmp_path):
    wn = _mcq(tmp_path / "mcq_wordnet.jsonl", "w")
    cfg = _cfg(tmp_path, mcq_sources=[{"name": "wordnet-medical", "data": str(wn)}])
    files = certification_files(cfg)
    assert [f.name for f in files] == ["mcq", "wordnet-medical"]
    assert resolve_source(files[1]) == ("user:mcq_wordnet", None)
    _card(wn, "wordnet-medical", "wordnet builder 1", "evaluation", ["WN:1"])
    source, card = resolve_source(files[1])
    assert source == "wordnet-medical" and card.concept_ids == ("WN:1",)
    # the mcq_sources entry inherits gate.non_inferiority
    assert family_gate(cfg).source_non_inferiority["wordnet-medical"].margin == 0.1


def test_a_declared_source_that_contradicts_the_card_is_an_error_naming_the_field(tmp_path):
    wn = _mcq(tmp_path / "mcq_wordnet.jsonl", "w")
    _card(wn, "wordnet-medical", "wordnet builder 1", "evaluation")
    cfg = _cfg(
        tmp_path, mcq_sources=[{"name": "wordnet-medical", "data": str(wn), "source": "pubmedqa"}]
    )
    [error] = check_declared_sources(cfg)
    assert error.startswith("evaluate.mcq_sources.0.source: declares source 'pubmedqa'")
    assert "says 'wordnet-medical'" in error
    with pytest.raises(DataError, match=r"^evaluate.mcq_sources.0.source"):
        independence_report(cfg)
    # the same name as the card is fine
    ok = _cfg(
        tmp_path,
        mcq_sources=[{"name": "wordnet-medical", "data": str(wn), "source": "wordnet-medical"}],
    )
    assert check_declared_sources(ok) == []


def test_the_built_in_set_is_not_independent_of_its_own_recovery_text(tmp_path):
    cfg = _cfg(tmp_path, mcq_source="hpo+icd10cm")
    rec = tmp_path / "recovery.jsonl"
    _card(rec, "hpo+icd10cm", "medprune build-data (builder v1)", "recovery", ["HP:2"])
    wn = _mcq(tmp_path / "mcq_wordnet.jsonl", "w")
    cfg = _cfg(tmp_path, mcq_source="hpo+icd10cm", mcq_sources=[{"name": "wn", "data": str(wn)}])
    report = {r.name: r for r in independence_report(cfg)}
    assert not report["mcq"].independent
    assert "same source 'hpo+icd10cm' as recover.data" in report["mcq"].reasons
    assert report["wn"].independent


def test_visit_notes_are_checked_against_the_training_text_too(tmp_path):
    notes = _jsonl(
        tmp_path / "notes.jsonl",
        [
            {
                "id": "n1",
                "input": "Doctor: any fever? Patient: raised body temperature since monday.",
                "reference": "CHIEF COMPLAINT\nFever.",
            }
        ],
    )
    cfg = _cfg(tmp_path, visit_notes={"data": str(notes), "source": "aci-bench"})
    report = {r.name: r for r in independence_report(cfg)}
    assert report["visit_notes"].source == "aci-bench" and report["visit_notes"].independent
    # the notes repeat a recovery text word for word: 8-word overlap
    rec = tmp_path / "recovery.jsonl"
    _jsonl(rec, [{"text": "Patient: raised body temperature since monday. Doctor: any fever?"}])
    cfg = RunConfig.model_validate({**json.loads(cfg.to_json()), "recover": {"data": str(rec)}})
    notes.write_text(
        json.dumps(
            {
                "id": "n1",
                "input": "Patient: raised body temperature since monday. Doctor: any fever?",
                "reference": "Fever.",
            }
        )
        + "\n"
    )
    v = {r.name: r for r in independence_report(cfg)}["visit_notes"]
    assert not v.independent and "100% of its items share an 8-word run" in v.reasons[0]
