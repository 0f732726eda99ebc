"""The shipped search example splits the shipped data: `medprune search examples/search.yaml`
on a fresh `medprune build-data` must not stop at the split (the built-in set has a source,
icd10cm, with a single rare category)."""

from __future__ import annotations

from pathlib import Path

from medprune.config import load_config
from medprune.search.checks import preflight_search, split_items

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(built_data_dir: Path, **more: object):
    return load_config(
        EXAMPLES / "search.yaml",
        overrides={
            **more,
            "evaluate.mcq": str(built_data_dir / "mcq.jsonl"),
            "evaluate.mcq_sources": [
                {
                    "name": "wordnet-medical",
                    "data": str(built_data_dir / "mcq_wordnet.jsonl"),
                    "source": "wordnet-medical",
                }
            ],
            "prune.calibration.data": str(built_data_dir / "calibration.jsonl"),
            "recover.data": str(built_data_dir / "recovery.jsonl"),
            "evaluate.perplexity": str(built_data_dir / "heldout.jsonl"),
        },
    )


def test_examples_search_yaml_splits_the_default_build(built_data_dir: Path) -> None:
    cfg = _example(built_data_dir)
    split, raw, _cert_raw = split_items(cfg)
    n = len(raw)
    assert len(split.search_ids) + len(split.certification_ids) == n
    assert not set(split.search_ids) & set(split.certification_ids)
    assert abs(len(split.certification_ids) - n * cfg.search.certification.fraction) <= len(
        split.strata
    )
    assert all(c["search"] >= 1 and c["certification"] >= 1 for c in split.strata.values())
    assert split.pooled  # the rare categories were pooled, not refused


def test_examples_search_yaml_passes_its_preflight(
    built_data_dir: Path, default_model_dir: Path, tmp_path: Path
) -> None:
    """Every check `medprune search examples/search.yaml` makes before pruning (rung sizes
    against the split, certification power, independence) passes on the shipped data."""
    cfg = _example(
        built_data_dir, **{"model.source": str(default_model_dir), "output_dir": str(tmp_path)}
    )
    found = preflight_search(cfg)
    assert found
