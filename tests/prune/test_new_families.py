"""Gemma 3 text (MedGemma's language model), Qwen3 and Llama 3.x end to end: each method
prunes, the pruned model saves and reloads with the same logits, generates, and recovers
for a step with its masks held."""

import copy

import pytest
import torch

from medprune.config import RecoverConfig
from medprune.load.model import load_model, save_model
from medprune.prune.apply import prunable_linears
from medprune.prune.engine import prune_model
from medprune.recover.data import pack_text
from medprune.recover.train import recover_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config, tiny_family

NEW = ["gemma3_text", "qwen3", "llama3"]
METHODS = {
    "wanda 2:4": {"method": "wanda", "sparsity": 0.5, "pattern": "2:4"},
    "width": {
        "method": "width",
        "sparsity": 0.3,
        "structured": {"prune_mlp": True, "prune_attention": True},
    },
    "depth": {"method": "depth", "sparsity": 0.5},
}
PROMPT = torch.tensor([[5, 17, 99, 200, 3, 42]])


def _logits(model, ids=PROMPT):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("family", NEW)
@pytest.mark.parametrize("label", list(METHODS))
def test_prune_save_reload_generate_recover(family, label, tmp_path):
    tok = byte_tokenizer()
    model = tiny_family(
        family, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=8
    )
    total = sum(p.numel() for p in model.parameters())
    result = prune_model(model, tok, small_prune_config(**METHODS[label]), calib_texts=CALIB_TEXTS)
    pruned = result.model
    if label == "wanda 2:4":
        for name, lin in prunable_linears(pruned.model.layers, ()).items():
            assert ((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1) <= 2).all(), name
    else:
        assert result.report["total_params"] < total
    save_model(pruned, tok, tmp_path / "m")
    back, back_tok = load_model(tmp_path / "m")
    assert type(back) is type(pruned) and back.config.model_type == pruned.config.model_type
    torch.testing.assert_close(_logits(back), _logits(pruned), rtol=0, atol=0)
    out = back.generate(
        PROMPT, max_new_tokens=8, do_sample=False, pad_token_id=back_tok.pad_token_id
    )
    assert out.shape == (1, PROMPT.shape[1] + 8) and torch.equal(out[:, : PROMPT.shape[1]], PROMPT)
    expected = int(_logits(pruned)[0, -1].argmax())
    assert int(out[0, PROMPT.shape[1]]) == expected

    examples = pack_text(tok, "mem", list(enumerate(({"text": t} for t in CALIB_TEXTS), 1)), 32)
    cfg = RecoverConfig(steps=1, lr=1e-3, batch_size=2, seq_len=32, log_every=100)
    keep_masks = label == "wanda 2:4"
    before = copy.deepcopy(back.state_dict())
    rec = recover_model(
        back,
        back_tok,
        examples,
        cfg,
        keep_masks=keep_masks,
        nm=(2, 4) if keep_masks else None,
        reference_dir=tmp_path / "m" if keep_masks else None,
    )
    assert rec.report["steps"] == 1 and torch.isfinite(torch.tensor(rec.report["final_loss"]))
    after = rec.model.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before if k in after)  # it trained
    if keep_masks:
        for name, lin in prunable_linears(rec.model.model.layers, ()).items():
            assert ((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1) <= 2).all(), name


def test_gemma3_single_kv_head_prunes_query_heads_and_mlp(tmp_path):
    """Small Gemma 3 models have one key/value head: width pruning keeps it and removes query
    heads and MLP channels; whole-group pruning can only shrink the MLP."""
    original = tiny_family("gemma3_text", num_attention_heads=4, num_key_value_heads=1, head_dim=16)
    model = copy.deepcopy(original)
    cfg = small_prune_config(
        method="width", structured={"num_attention_heads": 2, "intermediate_size": 64}
    )
    new = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS).model
    assert (new.config.num_attention_heads, new.config.num_key_value_heads) == (2, 1)
    assert new.model.layers[0].self_attn.k_proj.out_features == 16
    save_model(new, byte_tokenizer(), tmp_path / "m")
    back, _ = load_model(tmp_path / "m")
    torch.testing.assert_close(_logits(back), _logits(new), rtol=0, atol=0)
    kv = small_prune_config(method="width", sparsity=0.1, structured={"head_mode": "kv_groups"})
    result = prune_model(copy.deepcopy(original), byte_tokenizer(), kv, calib_texts=CALIB_TEXTS)
    assert result.model.config.num_attention_heads == 4
    assert result.model.config.intermediate_size < original.config.intermediate_size
