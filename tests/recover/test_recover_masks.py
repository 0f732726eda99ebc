import pytest
import torch

from medprune.config import RecoverConfig
from medprune.errors import RecoveryError
from medprune.prune.apply import prunable_linears
from medprune.recover.masks import nm_violations, verify_against_reference
from medprune.recover.train import recover_model

from tests.helpers.recover import packed_examples, pruned_tiny
from tests.helpers.tiny import byte_tokenizer, tiny_llama

EXCLUDE = ["lm_head", "embed_tokens"]


def _zeros(model):
    return {n: (m.weight == 0).clone() for n, m in prunable_linears(model, EXCLUDE).items()}


def test_nm_violations_counts_groups():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    assert nm_violations(w, 2, 4) == 1
    assert nm_violations(w * torch.tensor([1, 0, 1, 0, 1, 0, 1, 0.0]), 2, 4) == 0


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_full_training_keeps_exact_zeros_and_nm(pattern):
    model = pruned_tiny(pattern=pattern)
    zeros = _zeros(model)
    before = {n: m.weight.detach().clone() for n, m in prunable_linears(model, EXCLUDE).items()}
    # Weight decay and a large lr would move every weight if the masks did not hold.
    cfg = RecoverConfig(
        steps=4,
        lr=5e-2,
        weight_decay=0.1,
        batch_size=2,
        seq_len=32,
        log_every=100,
        gradient_checkpointing=pattern == "2:4",
        grad_accum=2 if pattern == "2:4" else 1,
    )
    result = recover_model(
        model, byte_tokenizer(), packed_examples(), cfg, nm=(2, 4) if pattern == "2:4" else None
    )
    moved = 0
    for name, m in prunable_linears(result.model, EXCLUDE).items():
        w = m.weight.detach()
        assert int((w[zeros[name]] != 0).sum()) == 0, name
        moved += int((w[~zeros[name]] != before[name][~zeros[name]]).sum())
        if pattern == "2:4":
            assert nm_violations(w, 2, 4) == 0
    assert moved > 0  # training did change the kept weights


def test_lora_merge_keeps_zeros_and_returns_plain_model():
    from transformers import LlamaForCausalLM

    model = pruned_tiny(pattern="2:4")
    zeros = _zeros(model)
    before = {n: m.weight.detach().clone() for n, m in prunable_linears(model, EXCLUDE).items()}
    cfg = RecoverConfig(
        steps=4,
        lr=5e-2,
        batch_size=2,
        seq_len=32,
        mode="lora",
        log_every=100,
        lora={
            "r": 4,
            "alpha": 8,
            "dropout": 0.0,
            "target_modules": ["q_proj", "v_proj", "down_proj"],
        },
    )
    result = recover_model(model, byte_tokenizer(), packed_examples(), cfg, nm=(2, 4))
    assert type(result.model) is LlamaForCausalLM
    assert not any("lora" in k for k in result.model.state_dict())
    changed = []
    for name, m in prunable_linears(result.model, EXCLUDE).items():
        w = m.weight.detach()
        assert int((w[zeros[name]] != 0).sum()) == 0, name
        assert nm_violations(w, 2, 4) == 0
        if not torch.equal(w, before[name]):
            changed.append(name.rsplit(".", 1)[-1])
    assert set(changed) == {"q_proj", "v_proj", "down_proj"}  # adapters were merged, only there


def test_reference_check_fails_loudly_on_leaked_weight(tmp_path):
    from medprune.load.model import save_model

    model = pruned_tiny()
    save_model(model, byte_tokenizer(), tmp_path / "pruned")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert verify_against_reference(state, tmp_path / "pruned", EXCLUDE)["verified_layers"] == 14
    key = "model.layers.1.mlp.up_proj.weight"
    idx = (state[key] == 0).nonzero()[0]
    state[key][tuple(idx)] = 0.5
    with pytest.raises(
        RecoveryError, match=r"model.layers.1.mlp.up_proj.weight: 1 pruned weights became non-zero"
    ):
        verify_against_reference(state, tmp_path / "pruned", EXCLUDE)


def test_reference_check_fails_on_broken_nm(tmp_path):
    from medprune.load.model import save_model

    dense_like = tiny_llama(1)
    # a reference with some zeros but not 2:4: the check must notice the pattern is broken
    with torch.no_grad():
        dense_like.model.layers[0].self_attn.q_proj.weight[:, :2] = 0
    save_model(dense_like, byte_tokenizer(), tmp_path / "ref")
    with pytest.raises(RecoveryError, match="break the 2:4 pattern"):
        verify_against_reference(dense_like.state_dict(), tmp_path / "ref", EXCLUDE, nm=(2, 4))


def test_structured_models_train_every_weight():
    model = pruned_tiny()
    zeros = _zeros(model)
    cfg = RecoverConfig(steps=2, lr=5e-2, batch_size=2, seq_len=32, log_every=100)
    result = recover_model(model, byte_tokenizer(), packed_examples(), cfg, keep_masks=False)
    revived = sum(
        int((m.weight.detach()[zeros[n]] != 0).sum())
        for n, m in prunable_linears(result.model, EXCLUDE).items()
    )
    assert revived > 0 and result.report["masked_layers"] == 0
