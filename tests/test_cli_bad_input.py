"""Bad input fails fast with a clear message, a non-zero exit, and nothing registered."""

import pytest

from medprune.cli import main

from tests.helpers.fixture_data import write_run_config


def _fails(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert match in err, err
    return err


def _nothing_registered(tmp_path):
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").iterdir())


def test_missing_model_dir(tmp_path, capsys):
    cfg = write_run_config(tmp_path, tmp_path / "no-such-model")
    _fails(capsys, ["run-local", str(cfg)], "model.source")
    _nothing_registered(tmp_path)


def test_bin_only_weights(tmp_path, tiny_model_dir, capsys):
    (tiny_model_dir / "medprune_complete.json").unlink()  # a plain Hugging Face directory
    for f in tiny_model_dir.glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    cfg = write_run_config(tmp_path, tiny_model_dir)
    _fails(capsys, ["run-local", str(cfg)], "safetensors only")
    _nothing_registered(tmp_path)


@pytest.mark.parametrize("value", ["1.0", "-0.2"])
def test_sparsity_out_of_range(tmp_path, tiny_model_dir, capsys, value):
    cfg = write_run_config(tmp_path, tiny_model_dir)
    _fails(capsys, ["validate", str(cfg), "--set", f"prune.sparsity={value}"], "prune.sparsity")
    _fails(capsys, ["run-local", str(cfg), "--set", f"prune.sparsity={value}"], "prune.sparsity")
    _nothing_registered(tmp_path)


def test_empty_jsonl(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir)
    (tmp_path / "data" / "mcq.jsonl").write_text("")
    _fails(capsys, ["run-local", str(cfg)], "mcq.jsonl: file is empty")
    _nothing_registered(tmp_path)


def test_malformed_jsonl_names_file_and_line(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir)
    text = tmp_path / "data" / "text.jsonl"
    text.write_text(text.read_text() + '{"text": "unterminated\n')
    lineno = len(text.read_text().splitlines())
    _fails(capsys, ["run-local", str(cfg)], f"text.jsonl:{lineno}: invalid JSON")
    _nothing_registered(tmp_path)


def test_unwritable_registry(tmp_path, tiny_model_dir, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the registry's parent should be")
    cfg = write_run_config(
        tmp_path, tiny_model_dir, registry={"local": {"root": str(blocker / "registry")}}
    )
    _fails(capsys, ["run-local", str(cfg)], "not a directory")
    assert blocker.is_file()


def test_validate_ok(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir)
    assert main(["validate", str(cfg)]) == 0
    assert "valid" in capsys.readouterr().out


def test_unknown_key(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir, prune={"methd": "wanda"})
    _fails(capsys, ["validate", str(cfg)], "prune.methd: unknown key")


def test_validate_checks_the_model_folder_and_every_data_line(tmp_path, tiny_model_dir, capsys):
    from safetensors.torch import load_file, save_file

    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"max_items": 1})
    (tiny_model_dir / "medprune_complete.json").unlink()  # a plain Hugging Face directory
    path = tiny_model_dir / "model.safetensors"
    tensors = load_file(path)
    tensors.pop("model.layers.1.mlp.up_proj.weight")
    save_file(tensors, path, metadata={"format": "pt"})
    mcq = tmp_path / "data" / "mcq.jsonl"
    mcq.write_text(
        mcq.read_text()
        + mcq.read_text()
        .splitlines()[0]
        .replace('"q0"', '"q99"')
        .replace('"answer": 0', '"answer": 9')
        + "\n"
    )
    err = _fails(capsys, ["validate", str(cfg)], "2 problems found before any work")
    assert "model.source: " in err and "'model.layers.1.mlp.up_proj.weight'" in err
    assert "mcq.jsonl:9: field 'answer' 9 is out of range" in err
    assert "Traceback" not in err
    _fails(capsys, ["run-local", str(cfg)], "'model.layers.1.mlp.up_proj.weight'")
    assert not (tmp_path / "runs").exists()  # nothing started, no run folder
    _nothing_registered(tmp_path)


def test_validate_prints_what_it_checked(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir)
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "ok: model " in out and "21 tensors in 1 safetensors file(s) match config.json" in out
    assert "ok: evaluate.mcq " in out and "8 items, all valid" in out


def test_submit_runs_the_preflight_first(tmp_path, tiny_model_dir, capsys):
    cfg = write_run_config(tmp_path, tiny_model_dir, evaluate={"mcq": "gs://bucket"})
    _fails(capsys, ["submit", str(cfg)], "evaluate.mcq: 'gs://bucket' names a bucket, not a file")
