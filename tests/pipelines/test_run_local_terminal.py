"""What a person sees from run-local when a stage fails: the one message that explains it and
the path of the full log; the run folder says it failed and keeps no empty folders."""

import pytest

from medprune.cli import main
from medprune.runner import FAILED_FILE, LOG_FILE

from tests.helpers.fixture_data import write_run_config

pytestmark = pytest.mark.slow


def test_failed_stage_is_one_line_and_the_log_path(tmp_path, tiny_model_dir, capsys):
    # NaN weights: the headers are fine (the preflight passes), the load stage sees the values.
    from safetensors.torch import load_file, save_file

    (tiny_model_dir / "medprune_complete.json").unlink()  # a plain Hugging Face directory
    path = tiny_model_dir / "model.safetensors"
    tensors = load_file(path)
    tensors["model.layers.1.mlp.up_proj.weight"][0, :5] = float("nan")
    save_file(tensors, path, metadata={"format": "pt"})
    cfg = write_run_config(tmp_path, tiny_model_dir)
    assert main(["run-local", str(cfg), "--run-id", "bad"]) == 2
    captured = capsys.readouterr()
    run_dir = tmp_path / "runs" / "bad"
    log = run_dir / LOG_FILE
    [error] = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: load failed: ") and f"(full log: {log})" in error
    assert (
        "1 tensor(s) hold NaN or infinite values: 'model.layers.1.mlp.up_proj.weight' (5 values)"
        in error
    )
    assert (
        "\x1b[" not in captured.err + captured.out
        and "Traceback" not in captured.err + captured.out
    )
    out = captured.out.splitlines()
    assert f"run bad: full log in {log}" in out[0]
    assert any(line.endswith("load: started") for line in out)
    assert any("load: FAILED after" in line for line in out)
    assert len(out) < 15, captured.out
    # the log has everything: kfp's own lines, the executor input, the traceback
    text = log.read_text()
    assert "Got executor_input:" in text and "Traceback (most recent call last):" in text
    assert "\x1b[" not in text
    # the run folder says it failed; no empty output folders are left behind
    assert (run_dir / FAILED_FILE).read_text().startswith("load failed: ")
    assert not [p for p in run_dir.rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert not (run_dir / "summary.json").exists()
    assert not (tmp_path / "registry" / "tiny-llama").exists()
