"""The shipped search example splits the shipped data: `medprune search examples/search.yaml`
on a fresh `medprune build-data` must not stop at the split (the built-in set has a source,
icd10cm, with a single rare category)."""

from __future__ import annotations

from pathlib import Path

from medprune.config import load_config
from medprune.search.checks import split_items

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_search_yaml_splits_the_default_build(built_data_dir: Path) -> None:
    cfg = load_config(
        EXAMPLES / "search.yaml",
        overrides={
            "evaluate.mcq": str(built_data_dir / "mcq.jsonl"),
            "evaluate.mcq_sources": [
                {
                    "name": "wordnet-medical",
                    "data": str(built_data_dir / "mcq_wordnet.jsonl"),
                    "source": "wordnet-medical",
                }
            ],
        },
    )
    split, raw, cert_raw = split_items(cfg)
    n = len(raw)
    assert len(split.search_ids) + len(split.certification_ids) == n
    assert not set(split.search_ids) & set(split.certification_ids)
    assert abs(len(split.certification_ids) - n * cfg.search.certification.fraction) <= len(
        split.strata
    )
    assert all(c["search"] >= 1 and c["certification"] >= 1 for c in split.strata.values())
    assert split.pooled  # the rare categories were pooled, not refused
