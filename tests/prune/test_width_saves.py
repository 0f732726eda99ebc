"""Every width plan the engine proposes or accepts gives a config that saves and reloads.

Llama and Gemma 2 configs refuse a head count that does not divide ``hidden_size`` (6 heads
on hidden 64) even with an explicit ``head_dim``; Mistral, Qwen2 and Phi-3 accept it.
"""

import copy

import pytest
import torch

from medprune.errors import PruneError
from medprune.prune.engine import prune_model
from medprune.prune.width import candidate_plans

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import ALL_FAMILIES, CALIB_TEXTS, small_prune_config, tiny_family

HEADS = {"num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 8}


def _saves(model, plan, tmp_path):
    from transformers import AutoConfig

    cfg = copy.deepcopy(model.config)
    for key in (
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "hidden_size",
    ):
        setattr(cfg, key, getattr(plan, key))
    cfg.save_pretrained(tmp_path)
    back = AutoConfig.from_pretrained(tmp_path)
    return back.num_attention_heads == plan.num_attention_heads and back.head_dim == plan.head_dim


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("head_mode", ["query_heads", "kv_groups"])
def test_every_candidate_plan_saves(family, head_mode, tmp_path):
    """With plan search the candidates include the plan ``plan_search: false`` returns."""
    model = tiny_family(family, **HEADS)
    plans = None
    for sparsity in (0.35, 0.5):  # some tiny models cannot reach 35% in whole key/value groups
        cfg = small_prune_config(
            method="width", sparsity=sparsity, structured={"head_mode": head_mode}
        )
        try:
            plans = candidate_plans(model, cfg)
            break
        except PruneError as exc:
            if "cannot be reached" not in str(exc):
                raise
    assert plans
    for i, plan in enumerate(plans):
        assert _saves(model, plan, tmp_path / str(i)), plan


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_explicit_head_count_that_cannot_be_saved_is_refused_before_pruning(family):
    model = tiny_family(family, **HEADS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = small_prune_config(method="width", structured={"num_attention_heads": 6})
    with pytest.raises(
        PruneError,
        match=r"num_attention_heads=6.*hidden_size=64 divisible by the head count.*"
        r"allowed: 2 heads/2 kv, 4 heads/2 kv, 8 heads/2 kv",
    ):
        prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_explicit_head_count_kept_where_the_family_saves_it(family, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_family(family, **HEADS)
    cfg = small_prune_config(method="width", structured={"num_attention_heads": 6})
    new = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS).model
    new.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert back.config.num_attention_heads == 6 and back.config.head_dim == 8
    ids = torch.tensor([[5, 17, 99, 200, 3, 42]])
    with torch.no_grad():
        torch.testing.assert_close(
            back(input_ids=ids).logits, new(input_ids=ids).logits, rtol=0, atol=0
        )


@pytest.mark.parametrize("plan_search", [True, False])
def test_llama_kv_groups_35_percent_prunes_saves_and_reloads(plan_search, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_family(
        "llama", num_attention_heads=12, num_key_value_heads=4, head_dim=8, hidden_size=48
    )
    cfg = small_prune_config(
        method="width",
        sparsity=0.35,
        structured={"head_mode": "kv_groups", "plan_search": plan_search},
    )
    result = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    assert 48 % result.model.config.num_attention_heads == 0
    result.model.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert back.config.num_attention_heads == result.model.config.num_attention_heads
