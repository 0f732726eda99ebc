"""YAML pitfalls in run configs: a key given twice is an error (PyYAML keeps the last one
silently); values YAML 1.1 reads as another type than they look get a hint."""

import pytest

from medprune.cli import main
from medprune.config import load_config
from medprune.errors import ConfigError

from tests.helpers.fixture_data import write_run_config


def _config(tmp_path, tiny_model_dir, extra: str):
    path = write_run_config(tmp_path, tiny_model_dir)
    path.write_text(path.read_text() + extra)
    return path


def test_duplicate_top_level_key(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir, "prune:\n  method: magnitude\n  sparsity: 0.9\n")
    first = next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("prune:")
    )
    with pytest.raises(
        ConfigError,
        match=rf"config\.yaml:\d+: key 'prune' appears twice \(first on line {first}\).*keep only the last",
    ):
        load_config(path)


def test_duplicate_nested_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model:\n  source: /m\nprune:\n  sparsity: 0.3\n  method: wanda\n  sparsity: 0.6\n"
    )
    with pytest.raises(
        ConfigError, match=r"c\.yaml:6: key 'prune\.sparsity' appears twice \(first on line 4\)"
    ):
        load_config(path)


def test_unquoted_nm_pattern_is_base_60(tmp_path, tiny_model_dir, capsys):
    path = _config(tmp_path, tiny_model_dir, "")
    path.write_text(
        path.read_text().replace("method: magnitude", "method: magnitude\n  pattern: 2:4")
    )
    with pytest.raises(
        ConfigError,
        match=r"prune\.pattern: YAML 1\.1 reads the unquoted 2:4 as the base-60 number 124; quote it",
    ):
        load_config(path)
    path.write_text(path.read_text().replace("pattern: 2:4", 'pattern: "2:4"'))
    assert load_config(path).prune.pattern == "2:4"
    # the same on the command line
    path.write_text(path.read_text().replace('  pattern: "2:4"\n', ""))
    assert main(["validate", str(path), "--set", "prune.pattern=2:4"]) == 2
    assert "base-60 number 124" in capsys.readouterr().err


def test_exponent_without_dot_gets_a_hint_where_it_fails(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir, "")
    path.write_text(
        path.read_text()
        .replace("sparsity: 0.5", "sparsity: 5e-1x")
        .replace("method: magnitude", "method: magnitude")
    )
    text = path.read_text().replace("sparsity: 5e-1x", "sparsity: 5e-1")
    path.write_text(text)
    # pydantic reads the string '5e-1' as a number: accepted, no surprise in the result
    assert load_config(path).prune.sparsity == 0.5
    path.write_text(text.replace("run_name: test-run", "run_name: test-run\nseed: 1e3"))
    with pytest.raises(
        ConfigError,
        match=r"seed: .*\(line \d+: YAML 1\.1 reads the unquoted 1e3 as text, not a number; write it with a dot \(1\.0e3\)",
    ):
        load_config(path)


def test_yes_no_gets_a_hint_where_it_fails(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir, "")
    path.write_text(path.read_text().replace("run_name: test-run", "run_name: no"))
    with pytest.raises(
        ConfigError,
        match=r"run_name: .*YAML 1\.1 reads the unquoted no as the boolean False; quote it",
    ):
        load_config(path)
