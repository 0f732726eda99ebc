"""Independent clinical MCQ sources: WordNet's medical glosses and medication brand names,
parsed from their original formats (tiny files written here), built from the extracts that
ship with medprune, and checked against the built-in set's recovery text."""

from __future__ import annotations

import bz2
import json
import os
import pickle
import re
from pathlib import Path

import pytest

from medprune.data.cards import DataCard, card_path
from medprune.data.clinical import build_clinical_data
from medprune.data.clinical.leakage import check_leakage
from medprune.data.independent.build import (
    DRUGS_FILE,
    SOURCES,
    WORDNET_FILE,
    build_independent_sets,
    drug_items,
    sources_dir,
    wordnet_items,
)
from medprune.data.independent.drugs import brand_pairs, extract_brand_pairs, read_pairs
from medprune.data.independent.wordnet import (
    MEDICAL_ROOTS,
    extract_medical_synsets,
    read_synsets,
)
from medprune.errors import DataError


def _record(offset: str, lemmas: list[str], hyponyms: list[str], gloss: str) -> str:
    words = " ".join(f"{w} 0" for w in lemmas)
    ptrs = " ".join(f"~ {h} n 0000" for h in hyponyms)
    return (
        f"{offset} 26 n {len(lemmas):02x} {words} {len(hyponyms):03d} {ptrs} | {gloss}  \n".replace(
            "  ", " "
        )
    )


def _data_noun(path: Path, extra: list[str] | None = None) -> Path:
    """A WordNet data.noun with every medical root, a few hyponyms, and the cases the
    extraction leaves out."""
    lines = ["  1 This software and database is being provided to you, the LICENSEE\n"]
    children = {"14070360": ["10000001", "10000002", "10000003", "10000004"]}
    for roots in MEDICAL_ROOTS.values():
        for root in roots:
            lines.append(
                _record(
                    root,
                    [f"root_{root}"],
                    children.get(root, []),
                    "a root concept of medicine here",
                )
            )
    lines += [
        _record(
            "10000001", ["gout", "podagra"], [], "a painful inflammation of the big toe and foot"
        ),
        _record(
            "10000002", ["plant_disease"], ["10000005"], "a disease that affects plants in fields"
        ),
        _record("10000005", ["leaf_curl"], [], "a disease of plants that makes leaves curl up"),
        _record("10000003", ["asthma"], [], "asthma of the lungs that makes breathing hard"),
        _record("10000004", ["rash"], [], "a skin eruption"),
        _record("20000000", ["table"], [], "a piece of furniture with a flat top surface"),
    ]
    path.write_text("".join(lines + (extra or [])), encoding="latin-1")
    return path


def test_wordnet_extraction_keeps_medical_glosses_and_leaves_out_the_rest(tmp_path: Path) -> None:
    synsets = {s.term: s for s in extract_medical_synsets(_data_noun(tmp_path / "data.noun"))}
    assert synsets["gout"].category == "disease"
    assert synsets["gout"].lemmas == ("gout", "podagra")
    assert synsets["gout"].concept_id == "WN:10000001"
    assert "leaf curl" not in synsets and "plant disease" not in synsets  # plants' subtree
    assert "asthma" not in synsets  # the gloss names its own term
    assert "rash" not in synsets  # a gloss of 3 words says too little
    assert "table" not in synsets  # under no medical root


def test_wordnet_bad_record_names_file_and_line(tmp_path: Path) -> None:
    path = _data_noun(tmp_path / "data.noun", extra=["30000000 26 n zz broken | gloss\n"])
    with pytest.raises(DataError, match=r"data\.noun:\d+: not a WordNet data\.noun record"):
        extract_medical_synsets(path)
    with pytest.raises(DataError, match=re.escape("WordNet data.noun not found")):
        extract_medical_synsets(tmp_path / "missing")


def test_wordnet_without_a_root_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.noun"
    path.write_text(_record("10000001", ["gout"], [], "a painful inflammation of the big toe"))
    with pytest.raises(DataError, match="no synset 14070360"):
        extract_medical_synsets(path)


def _dictionary(path: Path, payload: object) -> Path:
    with bz2.open(path, "wb") as fh:
        pickle.dump(payload, fh)
    return path


def test_brand_pairs_take_the_first_medlineplus_brand(tmp_path: Path) -> None:
    data = {
        "drug_canonical_to_data": {
            "abacavir": {"medline_plus_id": "a699012", "drugbank_id": "DB01048"},
            "prednisone": {"medline_plus_id": "a601102"},
            "obscurinol": {"drugbank_id": "DB99999"},  # no MedlinePlus page: left out
        },
        "drug_variant_to_canonical": {
            "abacavir": ["abacavir"],
            "ziagen": ["abacavir"],
            "epzicom": ["abacavir"],
            "prednisona": ["prednisone"],  # a spelling of the generic, not a brand
            "deltasone": ["prednisone"],
            "obscurex": ["obscurinol"],
            "two names": ["prednisone"],
        },
    }
    pairs = extract_brand_pairs(_dictionary(tmp_path / "d.pkl.bz2", data))
    assert [(p.brand, p.generic, p.medline_plus_id, p.drugbank_id) for p in pairs] == [
        ("ziagen", "abacavir", "a699012", "DB01048"),
        ("deltasone", "prednisone", "a601102", None),
    ]


class Exploit:
    def __reduce__(self):
        return (os.getcwd, ())


def test_drug_dictionary_loader_refuses_code(tmp_path: Path) -> None:
    bad = _dictionary(tmp_path / "bad.pkl.bz2", {"drug_canonical_to_data": Exploit()})
    with pytest.raises(DataError, match="refusing to load"):
        extract_brand_pairs(bad)
    wrong = _dictionary(tmp_path / "wrong.pkl.bz2", {"something": {}})
    with pytest.raises(DataError, match="no 'drug_canonical_to_data' table"):
        extract_brand_pairs(wrong)
    assert brand_pairs({"drug_canonical_to_data": {}, "drug_variant_to_canonical": {}}) == []


def test_bundled_extracts_ship_with_their_licenses() -> None:
    root = sources_dir()
    for src in SOURCES.values():
        folder = (root / src.extract).parent
        assert (folder / "LICENSE").stat().st_size > 500
        assert (folder / "README.md").is_file()
    assert len(read_synsets(root / SOURCES[WORDNET_FILE].extract)) > 1000
    assert len(read_pairs(root / SOURCES[DRUGS_FILE].extract)) > 1000


def test_wordnet_items_ask_for_the_term_with_same_category_distractors() -> None:
    synsets = read_synsets(sources_dir() / SOURCES[WORDNET_FILE].extract)
    by_offset = {s.offset: s for s in synsets}
    terms_of: dict[str, set[str]] = {}
    for s in synsets:
        terms_of.setdefault(s.category, set()).add(s.term)
    items = wordnet_items(synsets, 200, seed=3)
    assert len(items) == 200 and len({it["id"] for it in items}) == 200
    for it in items:
        answer = it["options"][it["answer"]]
        synset = by_offset[it["id"].removeprefix("wn-")]
        assert answer == synset.term and synset.gloss in it["question"]
        assert it["category"] == synset.category and it["source"] == "wordnet-medical"
        assert len({o.lower() for o in it["options"]}) == 4
        for other in it["options"]:
            assert other in terms_of[synset.category]
            if other != answer:
                assert other.lower() not in {lemma.lower() for lemma in synset.lemmas}


def test_drug_items_ask_for_the_generic() -> None:
    pairs = read_pairs(sources_dir() / SOURCES[DRUGS_FILE].extract)
    generic_of = {p.brand: p.generic for p in pairs}
    items = drug_items(pairs, 100, seed=0)
    assert len(items) == 100
    for it in items:
        brand = it["id"].removeprefix("drug-")
        assert brand.capitalize() in it["question"]
        assert it["options"][it["answer"]] == generic_of[brand]
        assert len(set(it["options"])) == 4


def test_build_is_deterministic_and_refuses_counts_it_cannot_make(tmp_path: Path) -> None:
    a = build_independent_sets(tmp_path / "a", seed=5, progress=lambda _: None)
    b = build_independent_sets(tmp_path / "b", seed=5, progress=lambda _: None)
    c = build_independent_sets(tmp_path / "c", seed=6, progress=lambda _: None)
    assert a == b and a[WORDNET_FILE]["sha256"] != c[WORDNET_FILE]["sha256"]
    assert (tmp_path / "a" / WORDNET_FILE).read_bytes() == (
        tmp_path / "b" / WORDNET_FILE
    ).read_bytes()
    assert a[WORDNET_FILE]["use"] == "certification"
    assert a[DRUGS_FILE]["use"] == "retention-benchmark-only"
    card = DataCard.load(card_path(tmp_path / "a" / WORDNET_FILE))
    assert card.source == "wordnet-medical" and card.role == "evaluation" and card.count == 300
    items = [json.loads(x) for x in (tmp_path / "a" / WORDNET_FILE).read_text().splitlines()]
    assert card.sha256 == a[WORDNET_FILE]["sha256"]
    assert set(card.concept_ids) == {"WN:" + it["id"].removeprefix("wn-") for it in items}
    assert set(card.concept_names) == {it["options"][it["answer"]].lower() for it in items}
    assert DataCard.load(card_path(tmp_path / "a" / DRUGS_FILE)).source == "drug-brands"
    rows = [json.loads(x) for x in (tmp_path / "a" / DRUGS_FILE).read_text().splitlines()]
    assert len(rows) == a[DRUGS_FILE]["count"] == 300
    with pytest.raises(DataError, match=r"only \d+ wordnet-medical items can be built, 5000 asked"):
        build_independent_sets(tmp_path / "d", n_wordnet=5000, progress=lambda _: None)
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_no_independent_item_appears_in_the_built_in_recovery_text(tmp_path: Path) -> None:
    """The built-in recovery and calibration text (HPO / ICD-10-CM) never contains an
    independent item's question or answer phrase (the leakage rule of build-data)."""
    small = {"n_mcq_full": 300, "n_heldout": 20, "n_calibration": 20, "n_recovery": 400}
    build_clinical_data(tmp_path, seed=0, progress=lambda _: None, **small)
    plain = build_independent_sets(tmp_path / "plain", seed=0, progress=lambda _: None)
    first = json.loads((tmp_path / "plain" / WORDNET_FILE).read_text().splitlines()[0])
    gloss = first["question"].removeprefix("Question: Which medical term means: ")
    planted = tmp_path / "planted.jsonl"
    planted.write_text(json.dumps({"text": f"Notes. {gloss} More notes."}) + "\n")
    texts = [tmp_path / "recovery.jsonl", tmp_path / "calibration.jsonl", planted]
    info = build_independent_sets(tmp_path, seed=0, exclude_texts=texts, progress=lambda _: None)
    assert plain[WORDNET_FILE]["dropped_for_leakage"] == 0
    assert info[WORDNET_FILE]["dropped_for_leakage"] >= 1
    assert info[WORDNET_FILE]["count"] == 300
    ids = {json.loads(x)["id"] for x in (tmp_path / WORDNET_FILE).read_text().splitlines()}
    assert first["id"] not in ids
    assert check_leakage([tmp_path / WORDNET_FILE, tmp_path / DRUGS_FILE], texts) == []
