"""Everything `medprune build-data` writes, in one call: the built-in clinical data (HPO /
ICD-10-CM, with the bundled PubMedQA and ACI-BENCH copies) and the independent sets built
from sources the recovery text never uses (WordNet medical glosses, drug brands), with the
built-in recovery and calibration text kept out of the latter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def build_all_data(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_mcq: int | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build every data file into ``out_dir``; return the clinical manifest with the
    independent files added under ``files``."""
    from medprune.data.clinical import build_clinical_data
    from medprune.data.independent.build import build_independent_sets

    out = Path(out_dir)
    kwargs: dict[str, Any] = {} if n_mcq is None else {"n_mcq": n_mcq}
    manifest = build_clinical_data(out, seed=seed, progress=progress, **kwargs)
    texts = [out / "recovery.jsonl", out / "calibration.jsonl"]
    files = dict(manifest["files"])
    files.update(build_independent_sets(out, seed=seed, exclude_texts=texts, progress=progress))
    return {**manifest, "files": files}
