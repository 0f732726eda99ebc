"""`medprune export gguf NAME@ALIAS` from the local registry, and `registry.export: [gguf]`."""

from __future__ import annotations

import pytest

from medprune.cli import main
from medprune.config import ServeConfig
from medprune.errors import ExportError
from medprune.export.bundle import with_serving_exports
from medprune.export.gguf import read_gguf_metadata
from medprune.load.model import save_model
from medprune.register.local import LocalRegistry

from tests.helpers.variants import build_variant


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg")
    model_dir = save_model(*build_variant("width"), root / "src")
    reg = LocalRegistry(root / "registry")
    reg.register("clinical-tiny", model_dir, {"run_id": "r1"}, aliases=["production"])
    return reg


def test_export_from_registry_alias(registry, tmp_path, capsys) -> None:
    out = tmp_path / "dist"
    rc = main(
        [
            "export",
            "gguf",
            "clinical-tiny@production",
            "-o",
            str(out),
            "--root",
            str(registry.root),
            "--outtype",
            "q8_0",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "Modelfile",
        "clinical-tiny-production-q8_0.gguf",
        "export.json",
    ]
    md = read_gguf_metadata(out / "clinical-tiny-production-q8_0.gguf")
    assert md["llama.attention.head_count"] == 2 and md["llama.embedding_length"] == 48
    assert "ollama create clinical-tiny-production -f Modelfile" in capsys.readouterr().out


def test_export_of_a_version_folder_is_named_after_model_and_version(
    registry, tmp_path, capsys
) -> None:
    import os
    import stat

    folder = registry.root / "clinical-tiny" / "1"
    out = tmp_path / "dist"
    assert main(["export", "gguf", str(folder), "-o", str(out), "--outtype", "q8_0"]) == 0
    assert "ollama create clinical-tiny-1 -f Modelfile" in capsys.readouterr().out
    assert (out / "clinical-tiny-1-q8_0.gguf").is_file()
    umask = os.umask(0)
    os.umask(umask)
    for path in out.iterdir():  # ordinary files, not the 0600 of a temporary file
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("clinical-tiny@staging", "has no alias 'staging'"),
        ("other-model@production", "'other-model' is not in the registry"),
        ("Not A Ref", "expected NAME@ALIAS"),
    ],
)
def test_bad_reference_names_it(registry, tmp_path, capsys, ref, message) -> None:
    out = tmp_path / "dist"
    assert main(["export", "gguf", ref, "-o", str(out), "--root", str(registry.root)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_registry_export_adds_gguf_to_the_version(registry, tmp_path) -> None:
    src = registry.resolve("clinical-tiny", "production")
    serve = ServeConfig(gguf={"outtypes": ["q8_0"]})
    with with_serving_exports(src, ["gguf"], serve=serve, name="clinical-tiny") as staged:
        version = registry.register("clinical-tiny", staged, {"run_id": "r2", "exports": ["gguf"]})
    names = {p.name for p in (registry.root / "clinical-tiny" / str(version.version)).iterdir()}
    assert {
        "clinical-tiny-q8_0.gguf",
        "Modelfile",
        "export.json",
        "config.json",
        "model.safetensors",
    } <= names
    assert not staged.exists()  # the staging copy is gone
    with with_serving_exports(src, [], serve=serve) as same:
        assert same == src


def test_registry_export_failure_registers_nothing(tmp_path) -> None:
    from tests.helpers.variants import bpe_tokenizer, variant_llama

    model_dir = save_model(variant_llama(), bpe_tokenizer(), tmp_path / "no-template")
    reg = LocalRegistry(tmp_path / "registry")
    with (
        pytest.raises(ExportError, match="no chat template"),
        with_serving_exports(model_dir, ["gguf"], name="m") as staged,
    ):
        reg.register("m", staged, {})
    assert reg.versions("m") == []
