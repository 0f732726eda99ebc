import itertools
import math

import pytest
import torch

from medprune.config import RecoverConfig
from medprune.errors import RecoveryError
from medprune.recover.checkpoint import MANIFEST, SAVING, latest_checkpoint, list_checkpoints
from medprune.recover.distill import kl_distill_loss, lm_loss
from medprune.recover.train import lr_at, recover_model

from tests.helpers.recover import packed_examples, pruned_tiny
from tests.helpers.tiny import byte_tokenizer, tiny_llama

CKPT_CFG = {
    "steps": 6,
    "lr": 1e-2,
    "weight_decay": 0.01,
    "batch_size": 2,
    "grad_accum": 2,
    "seq_len": 32,
    "checkpoint_every": 2,
    "log_every": 100,
}


def _run(tmp, **kw):
    cfg = RecoverConfig(**{**CKPT_CFG, **kw.pop("cfg", {})})
    return recover_model(pruned_tiny(), byte_tokenizer(), packed_examples(), cfg, seed=7, **kw)


def test_lr_schedule_warmup_then_decay():
    cfg = RecoverConfig(steps=10, lr=1.0, warmup_steps=2, schedule="cosine")
    lrs = [lr_at(s, cfg) for s in range(10)]
    assert (
        lrs[0] == pytest.approx(0.5)
        and lrs[1] == pytest.approx(1.0)
        and lrs[2] == pytest.approx(1.0)
    )
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:])) and lrs[-1] < 0.05
    lin = RecoverConfig(steps=4, lr=1.0, schedule="linear")
    assert [lr_at(s, lin) for s in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_kl_is_zero_for_identical_logits_and_ignores_masked_positions():
    logits = torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    assert float(kl_distill_loss(logits, logits.clone(), labels, 2.0)) == pytest.approx(
        0.0, abs=1e-6
    )
    other = torch.randn(2, 5, 11)
    assert float(kl_distill_loss(logits, other, labels, 2.0)) > 0
    labels_masked = labels.clone()
    labels_masked[:, 1:] = -100
    assert float(kl_distill_loss(logits, other, labels_masked, 2.0)) == 0.0
    assert math.isfinite(float(lm_loss(logits, labels)))


def test_resume_matches_uninterrupted_run(tmp_path):
    full = _run(tmp_path, checkpoint_dir=tmp_path / "a")
    first = _run(tmp_path, checkpoint_dir=tmp_path / "b", stop_after=3)  # "preempted" after step 3
    assert first.report["steps"] == 3
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [2]
    resumed = _run(tmp_path, checkpoint_dir=tmp_path / "b")
    assert resumed.report["resumed_from"].endswith("checkpoint-2")
    assert resumed.report["steps_this_run"] == 4 and resumed.report["steps"] == 6
    # same data order and same optimizer state: same losses from step 3 on, same weights
    assert resumed.report["losses"][2:] == pytest.approx(full.report["losses"][2:], rel=1e-5)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # only the newest checkpoints are kept
    assert [s for s, _ in list_checkpoints(tmp_path / "a")] == [2, 4]


def test_corrupt_checkpoint_is_refused(tmp_path):
    _run(tmp_path, checkpoint_dir=tmp_path / "c", stop_after=2)
    ckpt = latest_checkpoint(tmp_path / "c")
    weights = next(p for p in ckpt.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(
        RecoveryError, match=r"checkpoint-2 is corrupt: .*safetensors does not match its checksum"
    ):
        _run(tmp_path, checkpoint_dir=tmp_path / "c")
    (ckpt / MANIFEST).unlink()
    with pytest.raises(RecoveryError, match=r"checkpoint-2 is corrupt: no manifest.json"):
        _run(tmp_path, checkpoint_dir=tmp_path / "c")
    # the checkpoint is still there: nothing silently restarted from zero over it
    assert latest_checkpoint(tmp_path / "c") == ckpt


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    _run(tmp_path, checkpoint_dir=tmp_path / "d", stop_after=2)
    with pytest.raises(RecoveryError, match="was made with different settings"):
        _run(tmp_path, checkpoint_dir=tmp_path / "d", cfg={"batch_size": 1})


def test_interrupted_save_is_ignored(tmp_path):
    _run(tmp_path, checkpoint_dir=tmp_path / "e", stop_after=2)
    # a save killed before its manifest: the folder exists, written in place (no rename)
    half = tmp_path / "e" / "checkpoint-4"
    half.mkdir()
    (half / SAVING).write_text("")  # written first, deleted after the manifest
    (half / "model.safetensors").write_bytes(b"half")
    old_style = tmp_path / "e" / ".checkpoint-4.partial"  # left by versions that renamed folders
    old_style.mkdir()
    assert [s for s, _ in list_checkpoints(tmp_path / "e")] == [2]
    resumed = _run(tmp_path, checkpoint_dir=tmp_path / "e")
    assert resumed.report["resumed_from"].endswith("checkpoint-2") and not old_style.exists()
    assert (half / MANIFEST).is_file()  # step 4 was saved again, completely


def test_checkpoints_resume_on_a_file_system_without_directory_renames(fuse_fs):
    """Cloud Storage FUSE (Vertex AI's /gcs) refuses directory renames: checkpoints are
    written in place and finished by their manifest."""
    ckpts = fuse_fs.root / "ckpts"
    _run(fuse_fs.root, checkpoint_dir=ckpts, stop_after=3)
    assert [s for s, _ in list_checkpoints(ckpts)] == [2]
    resumed = _run(fuse_fs.root, checkpoint_dir=ckpts)
    assert resumed.report["resumed_from"].endswith("checkpoint-2") and resumed.report["steps"] == 6
    assert [s for s, _ in list_checkpoints(ckpts)] == [2, 4]
    assert fuse_fs.refused() == []


def test_distillation_loss_decreases():
    teacher = tiny_llama(seed=1)  # a different (dense) model the student must imitate
    cfg = RecoverConfig(
        steps=12,
        lr=3e-3,
        batch_size=4,
        seq_len=32,
        log_every=100,
        distill={"temperature": 2.0, "kl_weight": 1.0, "ce_weight": 0.0},
    )
    result = recover_model(
        pruned_tiny(), byte_tokenizer(), packed_examples(), cfg, teacher=teacher, seed=0
    )
    losses = result.report["losses"]
    assert result.report["distill"] is True
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


def test_eval_and_early_stopping(tmp_path):
    ex = packed_examples()
    cfg = RecoverConfig(
        steps=40,
        lr=0.5,
        max_grad_norm=100.0,
        batch_size=2,
        seq_len=32,
        eval_every=1,
        eval_fraction=0.2,
        early_stopping_patience=2,
        log_every=100,
        schedule="constant",
    )
    # an lr this large makes the eval loss worse: patience runs out long before step 40
    result = recover_model(
        pruned_tiny(),
        byte_tokenizer(),
        ex.subset(torch.arange(len(ex) - 4)),
        cfg,
        eval_examples=ex.subset(torch.arange(len(ex) - 4, len(ex))),
    )
    r = result.report
    assert [e["step"] for e in r["evals"]] == list(range(1, r["steps"] + 1))
    assert r["stopped_early"] and r["steps"] < 40
    assert r["best_eval_loss"] == min(e["loss"] for e in r["evals"])


# lr 0.5 with a constant schedule makes the eval loss worse after the first steps
BEST_CFG = {
    "steps": 40,
    "lr": 0.5,
    "max_grad_norm": 100.0,
    "batch_size": 2,
    "grad_accum": 1,
    "seq_len": 32,
    "eval_every": 1,
    "eval_fraction": 0.2,
    "early_stopping_patience": 2,
    "schedule": "constant",
    "weight_decay": 0.0,
    "checkpoint_every": 0,
    "log_every": 100,
}


def _split():
    ex = packed_examples()
    return ex.subset(torch.arange(len(ex) - 4)), ex.subset(torch.arange(len(ex) - 4, len(ex)))


def _best_run(cfg=None, **kw):
    train, held_out = _split()
    rc = RecoverConfig(**{**BEST_CFG, **(cfg or {})})
    return recover_model(
        pruned_tiny(), byte_tokenizer(), train, rc, eval_examples=held_out, seed=3, **kw
    )


def _same_weights(a, b, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.allclose(sa[k], sb[k], atol=atol, rtol=0) for k in sa)


def _zeros(model):
    return sum(int((m.weight == 0).sum()) for n, m in model.named_modules() if n.endswith("_proj"))


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_early_stopping_keeps_the_best_weights(mode):
    extra = {
        "mode": mode,
        **({"lr": 0.05, "lora": {"r": 4, "alpha": 32}} if mode == "lora" else {}),
    }
    best = _best_run(extra)
    r = best.report
    b = r["best_step"]
    assert r["stopped_early"] and b is not None and b < r["steps"]
    assert r["restored_best"] and r["weights_step"] == b
    assert r["best_eval_loss"] == min(e["loss"] for e in r["evals"]) == r["evals"][b - 1]["loss"]
    # the same run stopped at the best step: its final weights are the best weights
    at_best = _best_run(extra, stop_after=b)
    assert not at_best.report["restored_best"] and at_best.report["weights_step"] == b
    assert _same_weights(best.model, at_best.model)
    # restore_best false keeps the last step's weights, which differ
    last = _best_run({**extra, "restore_best": False})
    assert last.report["steps"] == r["steps"] and not last.report["restored_best"]
    assert last.report["weights_step"] == r["steps"]
    assert not _same_weights(last.model, best.model, atol=1e-4)
    # masks hold on the restored weights: as many pruned zeros as the pruned model had
    assert _zeros(best.model) == _zeros(pruned_tiny()) == _zeros(last.model)


def test_best_weights_survive_resume(tmp_path):
    whole = _best_run()
    b, n = whole.report["best_step"], whole.report["steps"]
    assert b <= n - 2  # patience 2: the best is older than the last checkpoint before the stop
    cfg = {"checkpoint_every": 1, "keep_checkpoints": 1}
    first = _best_run(cfg, checkpoint_dir=tmp_path / "ck", stop_after=n - 1)  # "preempted"
    latest = latest_checkpoint(tmp_path / "ck")
    assert (
        latest.name == f"checkpoint-{n - 1}" and (latest / "best_trainable-0.safetensors").is_file()
    )
    assert first.report["restored_best"]  # a run that ends early still ends with its best weights
    resumed = _best_run(cfg, checkpoint_dir=tmp_path / "ck")
    r = resumed.report
    assert r["resumed_from"].endswith(f"checkpoint-{n - 1}") and r["steps_this_run"] == 1
    assert r["stopped_early"] and r["best_step"] == b and r["restored_best"]
    assert _same_weights(resumed.model, whole.model, atol=1e-6)
