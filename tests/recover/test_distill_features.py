"""Intermediate-layer distillation (recover.distill.hidden_weight) and top-k KL
(recover.distill.top_k): the losses on small tensors, the layer map, and training on tiny
Llamas."""

import copy
import math

import pytest
import torch

from medprune.config import PruneConfig, RecoverConfig
from medprune.errors import ConfigError
from medprune.prune.depth import dense_layer_origin
from medprune.prune.engine import prune_model
from medprune.recover.distill import (
    hidden_state_loss,
    kl_distill_loss,
    lm_loss,
    normalized_mse,
    recovery_loss,
    topk_kl_distill_loss,
)
from medprune.recover.layers import distilled_layers, hidden_state_pairs, teacher_layer_map
from medprune.recover.train import recover_model

from tests.helpers.recover import clinical_texts, packed_examples, pruned_tiny
from tests.helpers.tiny import byte_tokenizer, tiny_llama

# ---------------------------------------------------------------- top-k KL


def _logits(seed, shape=(2, 6, 37)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 3


def _labels(shape=(2, 6), vocab=37):
    labels = torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(9))
    labels[0, 3] = -100  # a position without loss
    return labels


def _reference_topk_kl(s, t, labels, temperature, k):
    """The same quantity spelled out in float64: k + 1 outcomes, explicit rest masks."""
    s, t, lb = s[:, :-1].double(), t[:, :-1].double(), labels[:, 1:]
    keep = lb != -100
    p = torch.softmax(t[keep] / temperature, -1)
    q = torch.softmax(s[keep] / temperature, -1)
    idx = torch.topk(p, k, -1).indices
    top = torch.zeros_like(p, dtype=torch.bool).scatter(-1, idx, True)
    total = 0.0
    for row in range(p.shape[0]):
        pk, qk = p[row][top[row]], q[row][top[row]]
        pr, qr = p[row][~top[row]].sum(), q[row][~top[row]].sum()
        total += float((pk * (pk / qk).log()).sum() + pr * (pr / qr).log())
    return total / p.shape[0] * temperature**2


def test_topk_with_the_whole_vocabulary_is_the_full_kl():
    s, t, labels = _logits(0), _logits(1), _labels()
    full = kl_distill_loss(s, t, labels, 2.0)
    top = topk_kl_distill_loss(s, t, labels, 2.0, k=37)
    assert float(top) == pytest.approx(float(full), rel=1e-5)
    # k larger than the vocabulary means the vocabulary
    assert float(topk_kl_distill_loss(s, t, labels, 2.0, k=1000)) == pytest.approx(
        float(full), rel=1e-5
    )


@pytest.mark.parametrize("k", [1, 4, 16])
def test_topk_kl_is_the_kl_over_k_tokens_and_a_rest_bucket(k):
    s, t, labels = _logits(0), _logits(1), _labels()
    top = topk_kl_distill_loss(s, t, labels, 2.0, k=k)
    assert math.isfinite(float(top)) and float(top) > 0
    assert float(top) == pytest.approx(_reference_topk_kl(s, t, labels, 2.0, k), rel=1e-4)
    # grouping outcomes never raises the KL (data processing inequality)
    assert float(top) <= float(kl_distill_loss(s, t, labels, 2.0)) + 1e-5


def test_topk_kl_is_zero_for_identical_logits_and_has_finite_gradients():
    t, labels = _logits(1), _labels()
    s = t.clone().requires_grad_(True)
    loss = topk_kl_distill_loss(s, t, labels, 2.0, k=5)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    other = _logits(2).requires_grad_(True)
    topk_kl_distill_loss(other, t, labels, 2.0, k=5).backward()
    assert torch.isfinite(other.grad).all() and other.grad.abs().sum() > 0
    # a student that puts (almost) no mass outside the teacher's top-k: still finite
    peaked = torch.full_like(t, -1e4)
    peaked.scatter_(-1, torch.topk(t, 5, -1).indices, 0.0)
    peaked.requires_grad_(True)
    loss = topk_kl_distill_loss(peaked, t, labels, 2.0, k=5)
    loss.backward()
    assert (
        math.isfinite(float(loss.detach()))
        and float(loss.detach()) > 0
        and torch.isfinite(peaked.grad).all()
    )


def test_topk_kl_ignores_masked_positions():
    s, t = _logits(0), _logits(1)
    labels = torch.full((2, 6), -100)
    assert float(topk_kl_distill_loss(s, t, labels, 2.0, k=4)) == 0.0


# ---------------------------------------------------------------- hidden-state loss


def test_normalized_mse_is_zero_for_equal_states_and_ignores_padding():
    t = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert float(normalized_mse(t.clone(), t, mask)) == 0.0
    s = t + 0.1 * torch.randn(2, 5, 8)
    base = float(normalized_mse(s, t, mask))
    assert base > 0
    s_pad = s.clone()
    s_pad[0, 3:] += 100.0  # only padding positions change
    assert float(normalized_mse(s_pad, t, mask)) == pytest.approx(base)
    # scale-free: scaling both by 10 leaves it unchanged
    assert float(normalized_mse(10 * s, 10 * t, mask)) == pytest.approx(base, rel=1e-5)


def test_hidden_weight_zero_leaves_the_loss_as_before():
    s, t, labels = _logits(0), _logits(1), _labels()
    before = 1.0 * kl_distill_loss(s, t, labels, 2.0) + 0.5 * lm_loss(s, labels)
    loss, parts = recovery_loss(
        s, labels, t, temperature=2.0, kl_weight=1.0, ce_weight=0.5,
        hidden=torch.tensor(3.0), hidden_weight=0.0,
    )  # fmt: skip
    assert torch.equal(loss, before) and set(parts) == {"ce", "kl"}
    loss, parts = recovery_loss(
        s, labels, t, temperature=2.0, kl_weight=1.0, ce_weight=0.5,
        hidden=torch.tensor(3.0), hidden_weight=0.25,
    )  # fmt: skip
    assert float(loss) == pytest.approx(float(before) + 0.75) and parts["hidden"] == 3.0


def _forward_hidden(student, teacher, pairs, ids):
    attn = torch.ones_like(ids)
    out = student(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    with torch.no_grad():
        t_out = teacher(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    return hidden_state_loss(out.hidden_states, t_out.hidden_states, pairs, attn)


def test_hidden_loss_is_zero_for_the_teacher_itself_positive_otherwise_and_has_gradients():
    teacher = tiny_llama(seed=1, num_hidden_layers=3)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    pairs = hidden_state_pairs(teacher, teacher, "all")
    assert pairs == [(1, 1), (2, 2)]  # layers 0 and 1; the last goes through the logits
    same = copy.deepcopy(teacher)
    assert float(_forward_hidden(same, teacher, pairs, ids)) == pytest.approx(0.0, abs=1e-10)
    student = tiny_llama(seed=2, num_hidden_layers=3).train()
    loss = _forward_hidden(student, teacher, pairs, ids)
    assert float(loss) > 0
    loss.backward()
    grad = student.model.layers[0].mlp.down_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # the last layer's weights get no gradient from the intermediate states
    assert student.model.layers[2].mlp.down_proj.weight.grad is None


def test_distilled_layers_all_every_and_explicit():
    assert distilled_layers("all", 5) == [0, 1, 2, 3]
    assert distilled_layers("every:2", 5) == [1, 3]
    assert distilled_layers([0, 2], 5) == [0, 2]
    with pytest.raises(ConfigError, match=r"recover\.distill\.hidden_layers: layers \[4\]"):
        distilled_layers([1, 4], 5)
    with pytest.raises(ConfigError, match=r"recover\.distill\.hidden_layers='every:9'"):
        distilled_layers("every:9", 5)


# ---------------------------------------------------------------- layer maps


def test_dense_layer_origin_composes_through_chained_steps():
    first = dense_layer_origin(None, 6, [1, 3])
    assert first == [0, 2, 4, 5]
    assert dense_layer_origin(first, 4, [2]) == [0, 2, 5]
    assert dense_layer_origin(first, 4, None) == first  # a width or unstructured step


def test_teacher_layer_map_reads_the_lineage_or_refuses():
    assert teacher_layer_map({"dense_layers": [0, 2, 5]}, 3, 6) == [0, 2, 5]
    # models pruned before dense_layers was recorded: the depth report
    assert teacher_layer_map({"prune": {"removed_layers": [1, 3]}}, 4, 6) == [0, 2, 4, 5]
    assert teacher_layer_map({}, 4, 4) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match=r"recover\.distill\.hidden_weight: the student has 3"):
        teacher_layer_map({}, 3, 6)
    with pytest.raises(ConfigError, match=r"recover\.distill\.hidden_weight: .*dense model"):
        teacher_layer_map({"dense_layers": [0, 2]}, 3, 6)


def test_depth_pruned_student_pairs_with_the_layers_it_kept():
    teacher = tiny_llama(seed=1, num_hidden_layers=6)
    cfg = PruneConfig(
        method="depth",
        structured={"layers_to_remove": [1, 3]},
        calibration={"num_samples": 8, "seq_len": 32, "batch_size": 4},
    )
    pruned = prune_model(
        copy.deepcopy(teacher), byte_tokenizer(), cfg, calib_texts=clinical_texts()
    ).model
    layers = dense_layer_origin(None, 6, [1, 3])
    pairs = hidden_state_pairs(pruned, teacher, "all", layers)
    assert pairs == [(1, 1), (2, 3), (3, 5)]
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    # layer 0 is the teacher's layer 0 on the same input: identical output
    assert float(_forward_hidden(pruned, teacher, pairs[:1], ids)) == pytest.approx(0, abs=1e-10)
    # the identity map is refused: the layer counts differ
    with pytest.raises(ConfigError, match=r"recover\.distill\.hidden_weight: the student has 4"):
        hidden_state_pairs(pruned, teacher, "all")


def test_a_different_hidden_size_is_refused_before_training():
    cfg = RecoverConfig(steps=2, batch_size=2, seq_len=32, distill={"hidden_weight": 1.0})
    teacher = tiny_llama(seed=1, hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(
        ConfigError, match=r"recover\.distill\.hidden_weight: the student's hidden size \(64\)"
    ):
        recover_model(pruned_tiny(), byte_tokenizer(), packed_examples(), cfg, teacher=teacher)
    # without hidden states the same teacher is fine for logits-only distillation
    ok = RecoverConfig(steps=1, batch_size=2, seq_len=32, log_every=100)
    result = recover_model(pruned_tiny(), byte_tokenizer(), packed_examples(), ok, teacher=teacher)
    assert result.report["distill"] is True


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_recovery_with_hidden_states_and_top_k(mode):
    teacher = tiny_llama(seed=1, num_hidden_layers=3)
    student = pruned_tiny_with_layers(3)
    cfg = RecoverConfig(
        steps=6,
        lr=3e-3,
        batch_size=4,
        seq_len=32,
        log_every=100,
        mode=mode,
        distill={"hidden_weight": 1.0, "top_k": 8, "ce_weight": 0.0},
    )
    messages = []
    result = recover_model(
        student, byte_tokenizer(), packed_examples(), cfg, teacher=teacher, progress=messages.append
    )
    report = result.report
    assert report["distill"] and report["distill_top_k"] == 8
    assert report["distill_hidden_pairs"] == [[0, 0], [1, 1]]
    assert all(math.isfinite(v) for v in report["losses"])
    assert any("top-8 KL + hidden states of 2 layers" in m for m in messages)
    if mode == "full":  # full fine-tuning moves fast enough at this lr to see it learn
        assert report["losses"][-1] < report["losses"][0]


def pruned_tiny_with_layers(n):
    cfg = PruneConfig(method="magnitude", sparsity=0.5)
    return prune_model(tiny_llama(seed=0, num_hidden_layers=n), None, cfg).model


def test_default_distillation_reports_no_new_keys():
    cfg = RecoverConfig(steps=2, batch_size=2, seq_len=32, log_every=100)
    report = recover_model(
        pruned_tiny(), byte_tokenizer(), packed_examples(), cfg, teacher=tiny_llama(seed=1)
    ).report
    assert "distill_top_k" not in report and "distill_hidden_pairs" not in report


def test_stages_record_the_kept_layers_and_recovery_distils_from_them(tmp_path):
    """prune (depth) -> recover with hidden states, through the stages and their files."""
    from medprune.config import parse_config
    from medprune.load.lineage import read_lineage
    from medprune.prune.stage import stage_prune
    from medprune.recover.stage import stage_recover

    from tests.helpers.recover import write_text_jsonl
    from tests.helpers.tiny import save_tiny_model

    save_tiny_model(tmp_path / "dense", seed=1, num_hidden_layers=6)
    data = write_text_jsonl(tmp_path / "t.jsonl")

    def cfg(**distill):
        return parse_config(
            {
                "model": {"source": str(tmp_path / "dense")},
                "evaluate": {"perplexity": str(data)},
                "prune": {
                    "method": "depth",
                    "structured": {"layers_to_remove": [1, 3]},
                    "calibration": {
                        "data": str(data), "num_samples": 8, "seq_len": 32, "batch_size": 4,
                    },
                },
                "recover": {
                    "data": str(data), "steps": 2, "batch_size": 2, "seq_len": 32,
                    "distill": distill,
                },
            }
        )  # fmt: skip

    quiet = lambda m: None  # noqa: E731
    stage_prune(cfg(), tmp_path / "dense", tmp_path / "pruned", progress=quiet)
    assert read_lineage(tmp_path / "pruned")["dense_layers"] == [0, 2, 4, 5]
    report = stage_recover(
        cfg(hidden_weight=0.5, hidden_layers="every:2"),
        tmp_path / "pruned",
        tmp_path / "out",
        teacher_dir=tmp_path / "dense",
        progress=quiet,
    )
    assert report["distill_hidden_pairs"] == [[1, 2]]
    # the recovered model keeps the record, so a later rung's recovery maps it too
    assert read_lineage(tmp_path / "out")["dense_layers"] == [0, 2, 4, 5]
    # a teacher the lineage does not fit is refused before training
    save_tiny_model(tmp_path / "other", seed=1, num_hidden_layers=3)
    with pytest.raises(ConfigError, match=r"recover\.distill\.hidden_weight: lineage"):
        stage_recover(
            cfg(hidden_weight=0.5),
            tmp_path / "pruned",
            tmp_path / "out2",
            teacher_dir=tmp_path / "other",
            progress=quiet,
        )
