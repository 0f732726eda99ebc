"""The independence check on tiny examples: shares, and the verdict with its reasons."""

from __future__ import annotations

import pytest

from medprune.data.independence import (
    MOST_CONCEPTS_SHARED,
    NGRAM_ITEMS_SHARED,
    SourceProfile,
    check_independence,
    compare,
    ngram_share,
    share_covered,
    shingle_index,
)


def _p(name, source, *, generator=None, ids=(), names=(), texts=()) -> SourceProfile:
    return SourceProfile(
        name, f"field.{name}", source, generator, frozenset(ids), frozenset(names), tuple(texts)
    )


SENTENCE = "the patient reported a sharp pain in the left lower chest after exercise"


def test_shares_count_distinct_concepts_of_the_certification_side():
    assert share_covered(["HP:1", "HP:2", "HP:2", "HP:3", "HP:4"], ["HP:2", "HP:9"]) == 0.25
    assert share_covered([], ["HP:1"]) is None and share_covered(["HP:1"], []) is None


def test_ngram_share_is_the_share_of_items_sharing_an_8_word_run():
    index = shingle_index([SENTENCE.upper() + "!"])  # case and punctuation do not matter
    items = [
        "Question: " + " ".join(SENTENCE.split()[2:10]) + "?",  # 8 words of it
        "Question: " + " ".join(SENTENCE.split()[2:9]) + "?",  # only 7
        "something else entirely, with many words but none shared at all",
        "",
    ]
    assert ngram_share(items, index) == 0.25
    assert ngram_share([], index) == 0.0


def test_same_source_or_generator_is_not_independent():
    built = _p("mcq", "hpo+icd10cm", generator="build-data v1", ids=["HP:1"])
    recovery = _p("recovery", "hpo+icd10cm", generator="build-data v1", ids=["HP:2"])
    v = check_independence(built, [recovery])
    assert not v.independent and v.verdict == "not independent"
    assert any("same source 'hpo+icd10cm'" in r for r in v.reasons)
    assert any("same generator" in r for r in v.reasons)
    o = v.overlaps[0]
    assert o.concept_id_share == 0.0 and o.same_source and o.same_generator


def test_most_concepts_shared_across_ontologies_by_name_is_not_independent():
    cert = _p("wn", "wordnet-medical", names=["fever", "asthma", "anemia", "gout"])
    half = _p("recovery", "user:notes", names=["fever", "asthma", "cough"])
    few = _p("recovery", "user:notes", names=["fever", "cough"])
    assert MOST_CONCEPTS_SHARED == 0.5
    v = check_independence(cert, [half])
    assert not v.independent and v.reasons == ("50% of its concept names are in field.recovery",)
    assert check_independence(cert, [few]).independent


def test_texts_that_carry_the_items_wording_make_a_source_dependent():
    items = [
        f"item {i}: " + SENTENCE if i == 0 else f"unrelated question number {i}" for i in range(10)
    ]
    cert = _p("user", "user:items", texts=items)
    train = _p("recovery", "user:recovery", texts=[SENTENCE])
    assert compare(cert, train).ngram_share == pytest.approx(NGRAM_ITEMS_SHARED)
    v = check_independence(cert, [train])
    assert not v.independent and "share an 8-word run" in v.reasons[0]
    clean = _p("recovery", "user:recovery", texts=["a different text about knees and elbows"])
    ok = check_independence(cert, [clean])
    assert ok.independent and "independent of the training text" in ok.message()


def test_a_verdict_serialises_itself():
    v = check_independence(_p("a", "x", ids=["HP:1"]), [_p("r", "y", ids=["HP:1"])])
    from medprune.data.independence import Independence

    again = Independence.from_dict(v.to_dict())
    assert again == v and v.to_dict()["verdict"] == "not independent"
