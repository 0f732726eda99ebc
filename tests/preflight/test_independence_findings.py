"""`medprune validate`'s findings about certification sources: independence of the
training text, and declared sources against data cards."""

from __future__ import annotations

from medprune.config import load_config
from medprune.data.cards import DataCard
from medprune.preflight import preflight_run

from tests.helpers.fixture_data import write_run_config


def _card(path, source: str, role: str) -> None:
    DataCard.for_file(
        path,
        count=len(path.read_text().splitlines()),
        role=role,
        source=source,
        generator="medprune build-data (builder v1)",
        license="test",
        attribution="test",
    ).save(path.parent)


def test_a_source_sharing_the_recovery_texts_source_is_reported_not_independent(
    tmp_path, tiny_model_dir
):
    cfg = write_run_config(tmp_path, tiny_model_dir)
    data = tmp_path / "data"
    _card(data / "mcq.jsonl", "hpo+icd10cm", "evaluation")
    _card(data / "text.jsonl", "hpo+icd10cm", "recovery")
    report = preflight_run(load_config(cfg))
    assert report.errors == []
    [line] = [w for w in report.warnings if w.startswith("independence:")]
    assert "mcq (hpo+icd10cm): NOT independent" in line
    assert "same source 'hpo+icd10cm' as recover.data" in line
    assert line.endswith("it cannot be the only certification evidence")


def test_items_whose_definitions_are_in_the_recovery_text_are_not_independent(
    tmp_path, tiny_model_dir
):
    # the fixture's questions quote the definitions its text file holds: 8-word overlap
    cfg = write_run_config(tmp_path, tiny_model_dir)
    report = preflight_run(load_config(cfg))
    [line] = [w for w in report.warnings if w.startswith("independence:")]
    assert "mcq (user:mcq): NOT independent" in line
    assert "100% of its items share an 8-word run with recover.data" in line


def test_an_independent_source_is_listed_as_checked(tmp_path, tiny_model_dir):
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "Knees and elbows are joints that bend."}\n' * 4)
    cfg = write_run_config(tmp_path, tiny_model_dir, recover={"data": str(other)})
    report = preflight_run(load_config(cfg))
    [line] = [c for c in report.checked if c.startswith("independence:")]
    assert line.startswith("independence: mcq (user:mcq): independent of the training text")
    assert "recover.data: concept ids n/a, names n/a, 8-grams 0%" in line


def test_a_declared_source_contradicting_the_card_is_an_error_naming_the_field(
    tmp_path, tiny_model_dir
):
    cfg = write_run_config(tmp_path, tiny_model_dir, recover={"data_source": "wordnet-medical"})
    _card(tmp_path / "data" / "text.jsonl", "hpo+icd10cm", "recovery")
    report = preflight_run(load_config(cfg))
    assert report.errors and report.errors[0].startswith(
        "recover.data_source: declares source 'wordnet-medical'"
    )
