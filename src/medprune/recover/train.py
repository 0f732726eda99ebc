"""Recovery fine-tuning that keeps the pruning: pruned weights stay exactly zero.

One loop for one CPU, one GPU or many (``accelerate launch`` / ``torchrun`` with DDP or
FSDP2): :mod:`accelerate` places the model, wraps it, reduces gradients and saves state.
The loss is distillation from the dense teacher (KL on logits, over the full vocabulary or
the teacher's top-k tokens, plus optional cross-entropy and intermediate-layer distillation)
or, without a teacher, plain language-model loss. Full fine-tuning masks gradients and
weights; LoRA trains adapters on the frozen sparse base and merges them through the masks::

    result = recover_model(model, tokenizer, examples, cfg.recover, teacher=dense,
                           checkpoint_dir="ckpts", seed=0)
    result.model  # plain HF model, pruned weights still zero
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medprune.config import RecoverConfig
from medprune.errors import RecoveryError
from medprune.io.fuse import gcs_fuse_path
from medprune.progress import Progress
from medprune.recover import checkpoint as ckpt
from medprune.recover.data import TrainExamples, batch_indices
from medprune.recover.distill import hidden_state_loss, lm_loss, recovery_loss
from medprune.recover.layers import hidden_state_pairs
from medprune.recover.masks import (
    capture_masks,
    local_tensor,
    mask_gradients,
    merge_lora_through_masks,
    nm_violations,
    reapply_masks,
    verify_against_reference,
    verify_masks,
)


def lr_at(step: int, cfg: RecoverConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up to ``cfg.lr``,
    then cosine or linear decay to zero at ``cfg.steps``, or constant."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - progress)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_mixed_precision(setting: str) -> str:
    """'auto' -> 'bf16' on a GPU that supports it, else 'no' (float32 on CPU)."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


@dataclass
class RecoveryResult:
    """The trained model (unwrapped; LoRA merged), its full state dict on the main process
    when the model is sharded (FSDP) else ``None``, and the training report."""

    model: torch.nn.Module
    report: dict
    state_dict: dict | None = None
    is_main_process: bool = True
    accelerator: object = field(default=None, repr=False)


def _fingerprint(cfg: RecoverConfig, n_train: int, seed: int, world: int) -> dict:
    # What must match for a checkpoint to continue this run exactly.
    return {
        "mode": cfg.mode,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "seq_len": cfg.seq_len,
        "seed": seed,
        "train_sequences": n_train,
        "num_processes": world,
    }


def _apply_lora(model, cfg: RecoverConfig):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise RecoveryError(
            f"recover.lora.target_modules {cfg.lora.target_modules}: {exc}"
        ) from None


def _is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


@torch.no_grad()
def evaluate_loss(model, examples: TrainExamples, batch_size: int, accelerator) -> float:
    """Mean next-token cross-entropy of ``model`` on ``examples`` (split over processes)."""
    was_training = model.training
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    for start in range(rank * batch_size, len(examples), batch_size * world):
        idx = torch.arange(start, min(start + batch_size, len(examples)))
        ids = examples.input_ids[idx].to(accelerator.device)
        labels = examples.labels[idx].to(accelerator.device)
        mask = examples.attention_mask[idx].to(accelerator.device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        n = int((labels[:, 1:] != -100).sum())
        if n:
            total[0] += float(lm_loss(logits, labels)) * n
            total[1] += n
    total = accelerator.reduce(total, reduction="sum")
    if was_training:
        model.train()
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


@dataclass
class _RecoveryRun:
    """What the training loop reads and updates, made by :func:`_setup_recovery`.

    ``state`` is the resumable part (written into every checkpoint's manifest); the rest is
    rebuilt by every process on every start."""

    model: Any
    teacher: Any
    optimizer: Any
    params: list[torch.nn.Parameter]
    accelerator: Any
    cfg: RecoverConfig
    train: TrainExamples
    eval_examples: TrainExamples | None
    seed: int
    say: Progress
    use_teacher: bool
    hidden_pairs: list[tuple[int, int]]  # hidden_states indices (student, teacher); [] when off
    base_masks: dict[str, torch.Tensor]  # whole weights, captured before wrapping
    masks: dict[str, torch.Tensor]  # this process's shard, held during full fine-tuning
    state: dict[str, Any]
    keep_best: bool
    best: dict[str, torch.Tensor] | None = None
    checkpoint_dir: Path | None = None
    resumed_from: str | None = None
    steps_this_run: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index


def recover_model(
    model,
    tokenizer,
    train: TrainExamples,
    cfg: RecoverConfig,
    *,
    teacher=None,
    eval_examples: TrainExamples | None = None,
    exclude: list[str] | tuple[str, ...] = ("lm_head", "embed_tokens"),
    nm: tuple[int, int] | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    stop_after: int | None = None,
    keep_masks: bool = True,
    progress: Progress | None = None,
    accelerator=None,
    teacher_layers: list[int] | None = None,
) -> RecoveryResult:
    """Fine-tune ``model`` on ``train`` with the masks of its pruned layers held.

    ``teacher`` (the dense model) turns on distillation when ``cfg.distill.enabled``.
    With ``cfg.distill.hidden_weight`` > 0 the outputs of the student's layers are distilled
    from the teacher layers they came from: ``teacher_layers`` (one teacher index per student
    layer, :func:`medprune.recover.layers.teacher_layer_map`), the identity when None; a
    mismatch raises :class:`ConfigError` before training.
    ``checkpoint_dir`` receives a checkpoint every ``cfg.checkpoint_every`` steps and, with
    ``cfg.resume``, training continues from the newest one there (a corrupt one raises
    :class:`RecoveryError`). ``reference_dir`` is the pruned model's folder: after training
    every weight that was zero there is checked to be zero still (and the N:M pattern, with
    ``nm``). ``stop_after`` ends the loop after that many steps (as a preemption would).
    ``keep_masks=False`` trains every weight (structured pruning: the model is smaller, and
    any zeros it has are not a pruning mask). With ``eval_examples``, ``cfg.eval_every`` and
    ``cfg.restore_best``, the model returned holds the weights of the evaluation with the lowest
    loss (report: ``best_step``, ``restored_best``, ``weights_step``); a CPU copy of them is kept
    and written into every checkpoint, so a resumed run restores them too.
    """
    run = _setup_recovery(
        model,
        train,
        cfg,
        teacher=teacher,
        eval_examples=eval_examples,
        exclude=exclude,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        keep_masks=keep_masks,
        progress=progress,
        accelerator=accelerator,
        teacher_layers=teacher_layers,
    )
    _train_loop(run, stop_after)
    return _finish_recovery(run, exclude, nm, reference_dir, keep_masks)


# ---------------------------------------------------------------- setup


def _setup_recovery(
    model,
    train: TrainExamples,
    cfg: RecoverConfig,
    *,
    teacher,
    eval_examples: TrainExamples | None,
    exclude: list[str] | tuple[str, ...],
    seed: int,
    checkpoint_dir: str | Path | None,
    keep_masks: bool,
    progress: Progress | None,
    accelerator,
    teacher_layers: list[int] | None = None,
) -> _RecoveryRun:
    """Place and wrap the model (and teacher), make the optimizer, capture the masks and
    continue from the newest checkpoint when there is one."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if accelerator is None:
        # cpu=True on a host without CUDA: accelerate 1.15 only sets up gloo data parallelism
        # under torchrun when asked for the CPU; otherwise every rank trains alone.
        accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
            cpu=not torch.cuda.is_available(),
        )
    say: Progress = progress if (progress and accelerator.is_main_process) else _silent
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not _is_fsdp(
        accelerator
    ):
        # accelerate 1.15 turns FSDP on only for GPU-like devices: on the CPU it is plain DDP
        say(
            f"FSDP was requested (ACCELERATE_USE_FSDP) but accelerate runs {accelerator.distributed_type.value} "
            "on this device: every process holds the whole model (data parallel, no sharding)"
        )
    set_seed(seed)
    use_teacher = teacher is not None and cfg.distill.enabled
    hidden_pairs: list[tuple[int, int]] = []
    if use_teacher and cfg.distill.hidden_weight > 0:  # checked before anything is wrapped
        hidden_pairs = hidden_state_pairs(model, teacher, cfg.distill.hidden_layers, teacher_layers)

    base_masks = (
        capture_masks(model, exclude) if keep_masks else {}
    )  # whole weights, before wrapping
    if cfg.mode == "lora":
        model = _apply_lora(model, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "config"):
            model.config.use_cache = False
    model.train()
    model = accelerator.prepare_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = accelerator.prepare_optimizer(
        torch.optim.AdamW(params, lr=lr_at(0, cfg), weight_decay=cfg.weight_decay)
    )
    # Full fine-tuning moves base weights: hold their masks (on this process's shard).
    masks = capture_masks(model, exclude) if cfg.mode == "full" and keep_masks else {}
    if use_teacher:
        teacher.requires_grad_(False)
        teacher.eval()
        teacher = accelerator.prepare_model(teacher, evaluation_mode=True)

    run = _RecoveryRun(
        model=model,
        teacher=teacher,
        optimizer=optimizer,
        params=params,
        accelerator=accelerator,
        cfg=cfg,
        train=train,
        eval_examples=eval_examples,
        seed=seed,
        say=say,
        use_teacher=use_teacher,
        hidden_pairs=hidden_pairs,
        base_masks=base_masks,
        masks=masks,
        state={
            "step": 0,
            "samples": 0,
            "losses": [],
            "evals": [],
            "best_eval": None,
            "best_step": None,
            "bad_evals": 0,
            "stopped_early": False,
            "fingerprint": _fingerprint(cfg, len(train), seed, accelerator.num_processes),
        },
        # The trainable state at the best eval loss, on the CPU (this process's shard under FSDP).
        keep_best=bool(cfg.restore_best and cfg.eval_every and eval_examples is not None),
    )
    if checkpoint_dir is not None:
        _open_checkpoints(run, Path(gcs_fuse_path(str(checkpoint_dir))))

    if run.state["step"] == 0 and not run.state["losses"]:
        say(
            f"recovery: {cfg.mode} fine-tuning, {_loss_name(cfg, use_teacher, hidden_pairs)}, "
            f"{len(train)} sequences of {train.input_ids.shape[1]} tokens, {cfg.steps} steps, "
            f"{len(masks) or len(base_masks)} masked layers, {run.world} process(es)"
        )
    return run


def _silent(_msg: str) -> None:
    pass


def _loss_name(cfg: RecoverConfig, use_teacher: bool, hidden_pairs: list) -> str:
    if not use_teacher:
        return "language-model loss"
    d = cfg.distill
    kl = "full-vocabulary KL" if d.top_k is None else f"top-{d.top_k} KL"
    hidden = f" + hidden states of {len(hidden_pairs)} layers" if hidden_pairs else ""
    return f"distillation ({kl}{hidden})"


def _open_checkpoints(run: _RecoveryRun, checkpoint_dir: Path) -> None:
    """Make ``checkpoint_dir`` (clearing unfinished checkpoints) and, with ``recover.resume``,
    load the newest checkpoint there into the run."""
    accelerator, cfg = run.accelerator, run.cfg
    run.checkpoint_dir = checkpoint_dir
    if accelerator.is_main_process:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clear_partials(checkpoint_dir)
    accelerator.wait_for_everyone()
    latest = ckpt.latest_checkpoint(checkpoint_dir) if cfg.resume else None
    if latest is None:
        return
    saved = ckpt.verify_checkpoint(latest)
    if saved.get("fingerprint") != run.state["fingerprint"]:
        raise RecoveryError(
            f"checkpoint {latest} was made with different settings {saved.get('fingerprint')}, "
            f"this run has {run.state['fingerprint']}; use another recover.checkpoint_dir or "
            "recover.resume: false"
        )
    try:
        accelerator.load_state(str(latest))
    except Exception as exc:
        raise RecoveryError(f"checkpoint {latest} cannot be loaded: {exc}") from exc
    run.state = saved
    run.resumed_from = str(latest)
    run.best = _load_best(latest, accelerator) if run.keep_best else None
    if run.keep_best and run.best is None and run.state.get("best_step") is not None:
        run.say(f"{latest} holds no best weights: the run will end with its last step's weights")
    run.say(f"resumed from {latest} at step {run.state['step']}/{cfg.steps}")


def _save_checkpoint(run: _RecoveryRun, checkpoint_dir: Path, step: int) -> None:
    """Write a checkpoint of every process's state (and the best weights) for ``step``."""
    accelerator = run.accelerator
    target = ckpt.checkpoint_dir_for(checkpoint_dir, step)
    if accelerator.is_main_process:
        ckpt.start_checkpoint(checkpoint_dir, step)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(target), safe_serialization=True)
    if run.best is not None:
        _save_best(target, run.best, accelerator)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = ckpt.finish_checkpoint(checkpoint_dir, step, run.state, run.cfg.keep_checkpoints)
        run.say(f"checkpoint {final}")
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------- loop


def _train_loop(run: _RecoveryRun, stop_after: int | None) -> None:
    """Optimizer steps until ``cfg.steps``, early stopping, the time budget or ``stop_after``."""
    from tqdm.auto import tqdm

    cfg, state = run.cfg, run.state
    bar = tqdm(
        total=cfg.steps,
        initial=state["step"],
        desc="recover",
        disable=not run.accelerator.is_main_process,
    )
    t0 = time.perf_counter()
    clock = time.process_time if cfg.budget_clock == "cpu" else time.perf_counter
    c0 = clock()
    while state["step"] < cfg.steps and not state["stopped_early"]:
        if stop_after is not None and run.steps_this_run >= stop_after:
            break
        if cfg.max_minutes is not None and clock() - c0 >= cfg.max_minutes * 60:
            run.say(f"time budget of {cfg.max_minutes} minutes reached at step {state['step']}")
            state["budget_reached"] = True
            break
        step = state["step"]
        step_loss, parts_sum = _train_step(run, step)
        state["losses"].append(step_loss)
        state["step"] = step + 1
        state["samples"] = (step + 1) * cfg.grad_accum * run.world * cfg.batch_size
        run.steps_this_run += 1
        elapsed = time.perf_counter() - t0
        tok_s = run.tokens_seen / elapsed if elapsed > 0 else 0.0
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{tok_s:.0f}")
        if state["step"] % cfg.log_every == 0 or state["step"] == cfg.steps:
            detail = " ".join(f"{n} {v / cfg.grad_accum:.4f}" for n, v in parts_sum.items())
            run.say(
                f"recover step {state['step']}/{cfg.steps} loss {step_loss:.4f} ({detail}) lr {lr_at(step, cfg):.2e} {tok_s:.0f} tok/s"
            )
        if cfg.eval_every and run.eval_examples is not None and state["step"] % cfg.eval_every == 0:
            _evaluate_step(run, run.eval_examples)
        if (
            run.checkpoint_dir is not None
            and cfg.checkpoint_every
            and state["step"] % cfg.checkpoint_every == 0
            and state["step"] < cfg.steps
            and not state["stopped_early"]
        ):
            _save_checkpoint(run, run.checkpoint_dir, state["step"])
    bar.close()
    run.seconds = time.perf_counter() - t0


def _train_step(run: _RecoveryRun, step: int) -> tuple[float, dict[str, float]]:
    """One optimizer step of ``cfg.grad_accum`` micro-batches; the step's mean loss over
    processes and the sum of each loss part over the micro-batches."""
    cfg, accelerator, model, train = run.cfg, run.accelerator, run.model, run.train
    device = accelerator.device
    k = cfg.grad_accum
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    parts_sum: dict[str, float] = {}
    loss_sum = 0.0
    for micro in range(k):
        start = ((step * k + micro) * run.world + run.rank) * cfg.batch_size
        idx = batch_indices(len(train), cfg.batch_size, run.seed, start)
        ids = train.input_ids[idx].to(device)
        labels = train.labels[idx].to(device)
        attn = train.attention_mask[idx].to(device)
        sync = micro == k - 1
        ctx = accelerator.no_sync(model) if not sync else nullcontext()
        with ctx:
            loss, parts = _micro_batch_loss(run, ids, labels, attn)
            accelerator.backward(loss / k)
        loss_sum += float(loss.detach())
        for name, v in parts.items():
            parts_sum[name] = parts_sum.get(name, 0.0) + v
        run.tokens_seen += int(attn.sum()) * run.world
    if run.masks:
        mask_gradients(model, run.masks)
    accelerator.clip_grad_norm_(run.params, cfg.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.masks:
        reapply_masks(model, run.masks)
    step_loss = float(
        accelerator.reduce(torch.tensor(loss_sum / k, device=device), reduction="mean")
    )
    return step_loss, parts_sum


def _micro_batch_loss(
    run: _RecoveryRun, ids: torch.Tensor, labels: torch.Tensor, attn: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's (and teacher's) forward passes and the loss of one micro-batch."""
    d = run.cfg.distill
    with_hidden = bool(run.hidden_pairs)
    kwargs = {"output_hidden_states": True} if with_hidden else {}
    out = run.model(input_ids=ids, attention_mask=attn, **kwargs)
    teacher_logits, hidden = None, None
    if run.use_teacher:
        with torch.no_grad():
            t_out = run.teacher(input_ids=ids, attention_mask=attn, **kwargs)
        teacher_logits = t_out.logits
        if with_hidden:
            hidden = hidden_state_loss(
                out.hidden_states, t_out.hidden_states, run.hidden_pairs, attn
            )
    return recovery_loss(
        out.logits,
        labels,
        teacher_logits,
        temperature=d.temperature,
        kl_weight=d.kl_weight,
        ce_weight=d.ce_weight,
        top_k=d.top_k,
        hidden=hidden,
        hidden_weight=d.hidden_weight,
    )


def _evaluate_step(run: _RecoveryRun, eval_examples: TrainExamples) -> None:
    """Evaluate, keep the best weights so far, and stop early after ``patience`` evaluations
    without a better loss."""
    cfg, state = run.cfg, run.state
    ev = evaluate_loss(run.model, eval_examples, cfg.batch_size, run.accelerator)
    state["evals"].append({"step": state["step"], "loss": ev})
    if state["best_eval"] is None or ev < state["best_eval"]:
        state["best_eval"], state["best_step"], state["bad_evals"] = ev, state["step"], 0
        if run.keep_best:
            run.best = trainable_snapshot(run.model)
    else:
        state["bad_evals"] += 1
    run.say(f"recover step {state['step']} eval loss {ev:.4f} (best {state['best_eval']:.4f})")
    if cfg.early_stopping_patience and state["bad_evals"] >= cfg.early_stopping_patience:
        state["stopped_early"] = True
        run.say(
            f"early stop at step {state['step']}: no better eval loss in {state['bad_evals']} evaluations"
        )


# ---------------------------------------------------------------- finish


def _finish_recovery(
    run: _RecoveryRun,
    exclude: list[str] | tuple[str, ...],
    nm: tuple[int, int] | None,
    reference_dir: str | Path | None,
    keep_masks: bool,
) -> RecoveryResult:
    """Restore the best weights, check the masks, unwrap (merging LoRA through the masks),
    verify the pruning held and write the report."""
    cfg, state, accelerator, model = run.cfg, run.state, run.accelerator, run.model
    accelerator.wait_for_everyone()
    model.eval()
    restored = run.best is not None and state.get("best_step") != state["step"]
    if restored:
        load_trainable(model, run.best)
        run.say(
            f"restored the weights of step {state['best_step']} (best eval loss {state['best_eval']:.4f})"
        )
    if run.masks:
        verify_masks(model, run.masks)  # on this process's shard, before anything is gathered
    fsdp = _is_fsdp(accelerator)
    if cfg.mode == "lora" and fsdp:
        raise RecoveryError(
            "recover.mode 'lora' under FSDP is not supported; use DDP or mode 'full'"
        )
    unwrapped = accelerator.unwrap_model(model)
    if cfg.mode == "lora":
        unwrapped = merge_lora_through_masks(unwrapped, run.base_masks)
    state_dict = accelerator.get_state_dict(model) if fsdp else None
    seconds = run.seconds
    report = {
        "mode": cfg.mode,
        "distill": run.use_teacher,
        **_distill_report(cfg, run),
        "steps": state["step"],
        "steps_this_run": run.steps_this_run,
        "losses": state["losses"],
        "final_loss": state["losses"][-1] if state["losses"] else None,
        "evals": state["evals"],
        "best_eval_loss": state["best_eval"],
        "best_step": state.get("best_step"),
        "restored_best": restored,
        "weights_step": state["best_step"] if restored else state["step"],
        "stopped_early": state["stopped_early"],
        "resumed_from": run.resumed_from,
        "masked_layers": len(run.base_masks),
        "train_sequences": len(run.train),
        "train_format": run.train.fmt,
        "seconds": seconds,
        "tokens_per_second": run.tokens_seen / seconds if seconds > 0 else 0.0,
        "num_processes": run.world,
        "mixed_precision": accelerator.mixed_precision,
        "budget_reached": bool(state.get("budget_reached")),
        "complete": state["step"] >= cfg.steps
        or state["stopped_early"]
        or bool(state.get("budget_reached")),
    }
    if accelerator.is_main_process:
        final_state = state_dict if state_dict is not None else unwrapped.state_dict()
        if reference_dir is not None and keep_masks:
            report.update(verify_against_reference(final_state, reference_dir, list(exclude), nm))
        else:
            _verify_in_memory(unwrapped, run.base_masks, nm)
    return RecoveryResult(unwrapped, report, state_dict, accelerator.is_main_process, accelerator)


def _distill_report(cfg: RecoverConfig, run: _RecoveryRun) -> dict:
    # Only the settings that are on, so a report of today's default loss reads as before.
    extra: dict[str, Any] = {}
    if run.use_teacher and cfg.distill.top_k is not None:
        extra["distill_top_k"] = cfg.distill.top_k
    if run.hidden_pairs:
        extra["distill_hidden_pairs"] = [[s - 1, t - 1] for s, t in run.hidden_pairs]
    return extra


BEST_FILE = "best_trainable-{shard}.safetensors"


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable parameters (LoRA: the adapters; full: every weight), of
    this process's shard under FSDP: no collective is needed to take or restore it."""
    return {
        name: local_tensor(p.detach()).to("cpu", copy=True)
        for name, p in model.named_parameters()
        if p.requires_grad
    }


@torch.no_grad()
def load_trainable(model, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`trainable_snapshot` back into ``model`` in place."""
    params = dict(model.named_parameters())
    missing = sorted(set(snapshot) - set(params))
    if missing:
        raise RecoveryError(f"best weights do not fit the model: no parameter {missing[0]}")
    for name, t in snapshot.items():
        local_tensor(params[name].data).copy_(t)


def _best_shard(accelerator) -> int:
    # DDP: every process holds the same weights, the main one writes them; FSDP: one file a shard.
    return accelerator.process_index if _is_fsdp(accelerator) else 0


def _save_best(ckpt_dir: Path, best: dict[str, torch.Tensor], accelerator) -> None:
    from safetensors.torch import save_file

    if _is_fsdp(accelerator) or accelerator.is_main_process:
        tensors = {k: v.contiguous() for k, v in best.items()}
        save_file(tensors, str(ckpt_dir / BEST_FILE.format(shard=_best_shard(accelerator))))


def _load_best(ckpt_dir: Path, accelerator) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    path = Path(ckpt_dir) / BEST_FILE.format(shard=_best_shard(accelerator))
    return load_file(str(path)) if path.is_file() else None


def _verify_in_memory(model, masks: dict[str, torch.Tensor], nm: tuple[int, int] | None) -> None:
    verify_masks(model, masks)
    if nm is None:
        return
    modules = dict(model.named_modules())
    for name in masks:
        bad = nm_violations(modules[name].weight, *nm)
        if bad:
            raise RecoveryError(
                f"{name}: {bad} groups break the {nm[0]}:{nm[1]} pattern after recovery"
            )
