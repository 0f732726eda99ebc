import json
import re

import pytest

from medprune.config import parse_config
from medprune.errors import MedpruneError
from medprune.load.lineage import LINEAGE_FILE
from medprune.load.model import load_model, save_model
from medprune.prune.apply import sparsity_report
from medprune.recover.__main__ import main as recover_main
from medprune.recover.stage import recover_checkpoint_dir, stage_recover

from tests.helpers.recover import pruned_tiny, write_instruction_jsonl, write_text_jsonl
from tests.helpers.tiny import byte_tokenizer, save_tiny_model


def _cfg(tmp_path, **recover):
    return parse_config(
        {
            "model": {"source": str(tmp_path / "dense")},
            "evaluate": {"perplexity": str(tmp_path / "t.jsonl")},
            "prune": {"pattern": "2:4"},
            "recover": {
                "steps": 3,
                "lr": 1e-3,
                "batch_size": 2,
                "seq_len": 32,
                "checkpoint_every": 1,
                **recover,
            },
        }
    )


@pytest.fixture
def dirs(tmp_path):
    save_tiny_model(tmp_path / "dense", seed=1)
    save_model(pruned_tiny(pattern="2:4"), byte_tokenizer(), tmp_path / "pruned")
    write_text_jsonl(tmp_path / "t.jsonl")
    write_instruction_jsonl(tmp_path / "i.jsonl")
    return tmp_path


@pytest.mark.parametrize(("data", "mode"), [("t.jsonl", "full"), ("i.jsonl", "lora")])
def test_stage_recover_distils_and_keeps_sparsity(dirs, data, mode):
    cfg = _cfg(dirs, data=str(dirs / data), mode=mode)
    out = dirs / "recovered"
    out.mkdir()  # kfp creates artifact folders up front
    report = stage_recover(
        cfg, dirs / "pruned", out, teacher_dir=dirs / "dense", progress=lambda m: None
    )
    assert report["distill"] is True and report["steps"] == 3
    assert report["train_format"] == ("text" if data == "t.jsonl" else "instruction")
    assert report["verified_layers"] == 14 and report["sparsity_after"] == report[
        "sparsity_before"
    ] == pytest.approx(0.5)
    model, _ = load_model(out)
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.5)
    lineage = json.loads((out / LINEAGE_FILE).read_text())
    assert lineage["recover"]["mode"] == mode
    assert not recover_checkpoint_dir(cfg, out).exists()  # spent checkpoints are removed


def test_stage_recover_without_teacher_uses_lm_loss(dirs):
    cfg = _cfg(dirs, data=str(dirs / "t.jsonl"))
    report = stage_recover(cfg, dirs / "pruned", dirs / "out", progress=lambda m: None)
    assert report["distill"] is False


def test_stage_recover_needs_data(dirs):
    with pytest.raises(MedpruneError, match=re.escape("recover.data")):
        stage_recover(_cfg(dirs), dirs / "pruned", dirs / "out", progress=lambda m: None)


def test_checkpoint_dir_from_config_maps_gs_to_fuse(dirs):
    cfg = _cfg(dirs, data="gs://bucket/r.jsonl", checkpoint_dir="gs://bucket/ckpts/run1")
    assert str(recover_checkpoint_dir(cfg, dirs / "out")) == "/gcs/bucket/ckpts/run1"
    assert (
        recover_checkpoint_dir(_cfg(dirs), dirs / "a" / "recovered_model")
        == dirs / "a" / "recovered_model.checkpoints"
    )


def test_module_entry_point(dirs, capsys):
    cfg = _cfg(dirs, data=str(dirs / "t.jsonl"), steps=1)
    (dirs / "cfg.json").write_text(cfg.to_json())
    rc = recover_main(
        [
            "--config-json",
            f"@{dirs / 'cfg.json'}",
            "--model-dir",
            str(dirs / "pruned"),
            "--teacher-dir",
            str(dirs / "dense"),
            "--out-dir",
            str(dirs / "m"),
            "--report",
            str(dirs / "r.json"),
        ]
    )
    assert rc == 0 and json.loads((dirs / "r.json").read_text())["steps"] == 1
    assert (dirs / "m" / "config.json").is_file()
    bad = cfg.model_copy(deep=True)
    bad.recover.data = str(dirs / "missing.jsonl")
    (dirs / "bad.json").write_text(bad.to_json())
    rc = recover_main(
        [
            "--config-json",
            f"@{dirs / 'bad.json'}",
            "--model-dir",
            str(dirs / "pruned"),
            "--out-dir",
            str(dirs / "m2"),
        ]
    )
    assert rc == 2 and "missing.jsonl: data file not found" in capsys.readouterr().err


def test_custom_job_step_runs_in_process_outside_vertex(dirs):
    from medprune.recover.custom_job import run_recover_step

    cfg = _cfg(dirs, data=str(dirs / "t.jsonl"), steps=1, custom_job={"enabled": True})
    report = run_recover_step(
        cfg.to_json(),
        "[]",
        "{{$.pipeline_job_resource_name}}",
        model_dir=str(dirs / "pruned"),
        teacher_dir=str(dirs / "dense"),
        out_dir=str(dirs / "cj"),
        progress=lambda m: None,
    )
    assert report["steps"] == 1 and report["distill"] is True
    assert (dirs / "cj" / "model.safetensors").is_file()
