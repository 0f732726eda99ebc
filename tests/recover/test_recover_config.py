import re

import pytest

from medprune.config import parse_config
from medprune.errors import ConfigError

BASE = {"model": {"source": "/m"}, "evaluate": {"mcq": "/q.jsonl"}}


def _recover(**kw):
    return parse_config({**BASE, "recover": kw}).recover


def test_defaults_are_full_finetune_with_distillation():
    r = _recover()
    assert r.mode == "full" and r.distill.enabled and r.resume and r.custom_job.enabled is False


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"mode": "qlora"}, "recover.mode"),
        ({"lora": {"r": 0}}, "recover.lora.r"),
        ({"lora": {"target_modules": []}}, "recover.lora.target_modules"),
        ({"distill": {"temperature": 0}}, "recover.distill.temperature"),
        ({"distill": {"kl_weight": 0, "ce_weight": 0}}, "recover.distill"),
        ({"distill": {"top_k": 0}}, "recover.distill.top_k"),
        ({"distill": {"hidden_weight": -0.5}}, "recover.distill.hidden_weight"),
        ({"distill": {"hidden_layers": "every:0"}}, "recover.distill.hidden_layers"),
        ({"distill": {"hidden_layers": []}}, "recover.distill.hidden_layers"),
        ({"distill": {"hidden_layers": [1, 1]}}, "recover.distill.hidden_layers"),
        ({"eval_every": 5}, "recover"),
        ({"early_stopping_patience": 2}, "recover"),
        ({"eval_fraction": 1.0}, "recover.eval_fraction"),
        ({"mixed_precision": "fp8"}, "recover.mixed_precision"),
        ({"grad_accum": 0}, "recover.grad_accum"),
        ({"schedule": "step"}, "recover.schedule"),
        ({"data_format": "csv"}, "recover.data_format"),
        ({"checkpoints_every": 5}, "recover.checkpoints_every: unknown key"),
    ],
)
def test_bad_recover_settings_name_the_field(fields, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        _recover(**fields)


def test_distill_defaults_are_full_kl_without_hidden_states():
    d = _recover().distill
    assert d.top_k is None and d.hidden_weight == 0 and d.hidden_layers == "all"
    d = _recover(distill={"hidden_weight": 1.0, "hidden_layers": [3, 1], "top_k": 64}).distill
    assert d.hidden_layers == [1, 3] and d.top_k == 64
    assert _recover(distill={"hidden_layers": "every:2"}).distill.hidden_layers == "every:2"
    # hidden states alone are something to train on
    assert _recover(distill={"kl_weight": 0, "ce_weight": 0, "hidden_weight": 1}).distill


def test_eval_settings_message_names_fields():
    with pytest.raises(
        ConfigError, match=re.escape("eval_every needs recover.eval_data or recover.eval_fraction")
    ):
        _recover(eval_every=5)


def test_relative_paths_resolve(tmp_path):
    cfg = parse_config(
        {**BASE, "recover": {"eval_data": "e.jsonl", "checkpoint_dir": "ck"}}, base_dir=tmp_path
    )
    assert cfg.recover.eval_data == str(tmp_path / "e.jsonl")
    assert cfg.recover.checkpoint_dir == str(tmp_path / "ck")
