"""Data cards: what they hold, how they are saved beside their file and read back, and the
errors for a card that does not describe its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medprune.data.cards import DataCard, card_path, normalise_name, user_source
from medprune.errors import DataError


def _file(tmp_path: Path, name: str = "items.jsonl", text: str = '{"text": "a"}\n') -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _card(path: Path, **kw) -> DataCard:
    args = dict(
        count=1,
        role="evaluation",
        source="wordnet-medical",
        generator="test 1.0",
        license="CC0",
        attribution="nobody",
        concept_ids=["WN:2", "WN:1", "WN:1"],
        concept_names=["  Heart  Attack", "fever"],
    )
    args.update(kw)
    return DataCard.for_file(path, **args)


def test_a_card_is_saved_beside_its_file_and_read_back_equal(tmp_path):
    path = _file(tmp_path)
    card = _card(path)
    saved = card.save(tmp_path)
    assert saved == card_path(path) == tmp_path / "items.jsonl.card.json"
    assert DataCard.load_beside(path) == card
    data = json.loads(saved.read_text())
    # canonical: ids sorted and unique, names lower-case with single spaces
    assert data["concept_ids"] == ["WN:1", "WN:2"]
    assert data["concept_names"] == ["fever", "heart attack"]
    assert data["sha256"] == card.sha256 and len(card.sha256) == 64


def test_no_card_is_none_and_a_stale_card_is_an_error(tmp_path):
    path = _file(tmp_path)
    assert DataCard.load_beside(path) is None
    _card(path).save(tmp_path)
    path.write_text('{"text": "changed"}\n')
    with pytest.raises(DataError, match="describes another version"):
        DataCard.load_beside(path)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"role": "training"}, "role 'training'"),
        ({"source": "Has Spaces"}, "source 'Has Spaces'"),
        ({"concept_ids": ["14070360"]}, "namespaced"),
        ({"count": -1}, "count"),
    ],
)
def test_bad_card_fields_are_errors_naming_the_field(tmp_path, kw, match):
    with pytest.raises(DataError, match=match):
        _card(_file(tmp_path), **kw)


def test_a_card_file_with_missing_or_unknown_fields_is_refused(tmp_path):
    path = _file(tmp_path)
    data = _card(path).to_dict()
    del data["license"]
    data["colour"] = "red"
    card_path(path).write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"missing fields \['license'\], unknown fields \['colour'\]"
    ):
        DataCard.load_beside(path)


def test_names_and_default_sources():
    assert normalise_name("  Acute\tMyocardial   INFARCTION ") == "acute myocardial infarction"
    assert user_source("/x/My Notes.v2.jsonl") == "user:my-notes"
    assert user_source("ori_pqal.json") == "user:ori_pqal"
