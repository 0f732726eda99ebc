"""A pipeline model directory with its lineage: the weights, the config that made them
(``medprune_config.json``) and what each stage did to them (``medprune_lineage.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medprune.config import RunConfig
from medprune.load.model import save_model
from medprune.load.terms import copy_terms

CONFIG_FILE = "medprune_config.json"
LINEAGE_FILE = "medprune_lineage.json"


def read_lineage(model_dir: str | Path) -> dict[str, Any]:
    """What the stages recorded about the model in ``model_dir`` ({} for a plain model)."""
    path = Path(model_dir) / LINEAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_with_lineage(
    model,
    tokenizer,
    out_dir: str | Path,
    cfg: RunConfig,
    lineage: dict,
    *,
    terms_from: str | Path | None = None,
) -> None:
    """Save a model with the run's config and its lineage next to the weights, and the
    model's terms files (:mod:`medprune.load.terms`) from ``terms_from``, the folder it was
    read from."""
    save_model(
        model,
        tokenizer,
        out_dir,
        extra_files={CONFIG_FILE: json.loads(cfg.to_json()), LINEAGE_FILE: lineage},
    )
    if terms_from is not None:
        copy_terms(terms_from, out_dir)
