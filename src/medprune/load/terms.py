"""Model terms that travel with the weights: a model released under its own terms (Gemma)
keeps its terms text beside every model medprune derives from it, and a run must say it
accepts them (``model.accept_terms``) before any work.

``medprune fetch-default --model gemma3-270m`` writes ``GEMMA_TERMS.html`` and
``GEMMA_NOTICE.md`` beside the converted weights; the load, prune and recover stages copy
them into each model they write, so the pruned, recovered and registered models carry them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: Terms name -> the files that carry them beside the weights (the first one marks them).
TERMS_FILES: dict[str, tuple[str, ...]] = {
    "gemma": ("GEMMA_TERMS.html", "GEMMA_NOTICE.md"),
}


def terms_in(model_dir: str | Path) -> list[str]:
    """The names of the terms whose marking file is in ``model_dir``."""
    d = Path(model_dir)
    return [name for name, files in TERMS_FILES.items() if (d / files[0]).is_file()]


def copy_terms(src_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Copy every terms file of ``src_dir`` into ``out_dir``; return the names copied."""
    src, out = Path(src_dir), Path(out_dir)
    copied = []
    for files in TERMS_FILES.values():
        for name in files:
            if (src / name).is_file():
                out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / name, out / name)
                copied.append(name)
    return copied


def unaccepted_terms(model_dir: str | Path, accepted: list[str]) -> list[str]:
    """Terms the model carries that the run has not accepted."""
    return [name for name in terms_in(model_dir) if name not in accepted]


def terms_errors(model_dir: str | Path, accepted: list[str]) -> list[str]:
    """One message per terms the model carries that ``model.accept_terms`` does not list."""
    return [
        f"model.accept_terms: {model_dir} carries the {name} terms ({TERMS_FILES[name][0]}); "
        f"read them and add '{name}' to model.accept_terms to accept them for this run and "
        "every model it derives"
        for name in unaccepted_terms(model_dir, accepted)
    ]
