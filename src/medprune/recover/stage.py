"""The recover stage: fine-tune the pruned model back towards the dense one, masks kept."""

from __future__ import annotations

import shutil
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.io.atomic import copy_complete_directory, is_complete
from medprune.load.lineage import read_lineage, save_with_lineage
from medprune.load.model import DTYPES, load_model
from medprune.progress import Progress
from medprune.prune.apply import sparsity_report


def recover_checkpoint_dir(cfg: RunConfig, out_dir: str | Path) -> Path:
    """Where recovery checkpoints go: ``recover.checkpoint_dir`` (gs:// read as /gcs/...),
    else a folder beside the output model, which a retried task finds again."""
    from medprune.recover.checkpoint import durable_dir

    if cfg.recover.checkpoint_dir:
        return Path(durable_dir(cfg.recover.checkpoint_dir))
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.checkpoints"


def _is_structured(method_name: str) -> bool:
    """Structured methods (width, depth) make the model smaller; it then trains normally."""
    from medprune.prune.methods import get_method

    try:
        return getattr(get_method(method_name), "kind", "mask") in ("width", "depth")
    except MedpruneError:
        return False


def _remove_checkpoints(ckpt_dir: Path) -> None:
    from medprune.recover.checkpoint import list_checkpoints

    for _, path in list_checkpoints(ckpt_dir):
        shutil.rmtree(path, ignore_errors=True)
    try:
        ckpt_dir.rmdir()  # only if nothing else is in it
    except OSError:
        pass


def stage_recover(
    cfg: RunConfig,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    teacher_dir: str | Path | None = None,
    progress: Progress = print,
) -> dict:
    """Fine-tune the pruned model to win back accuracy; pruned weights stay zero.

    With ``teacher_dir`` (the dense model) and ``recover.distill.enabled`` the loss is
    distillation. Runs the same under ``accelerate launch`` on many GPUs: every process calls
    this, the main process writes ``out_dir``. Checkpoints go to
    :func:`recover_checkpoint_dir`, and a rerun resumes from the newest one.
    """
    from medprune.recover.data import load_examples, split_eval
    from medprune.recover.train import recover_model, resolve_mixed_precision

    rc = cfg.recover
    if not rc.enabled or rc.steps == 0:
        progress("recovery disabled: passing the pruned model through")
        copy_complete_directory(
            model_dir, out_dir
        )  # no directory rename: fine on Cloud Storage FUSE
        return {"enabled": False}
    if not rc.data:
        raise MedpruneError(
            "recover.data: set a JSONL of {text} or {prompt, response} to fine-tune on, or recover.enabled: false"
        )
    done = read_lineage(out_dir).get("recover")
    if done and done.get("complete") and is_complete(out_dir):
        progress(f"recovery already finished in {out_dir} (a retried task): keeping it")
        return done
    model, tokenizer = load_model(model_dir, dtype="float32")  # float32 master weights
    train = load_examples(tokenizer, rc.data, rc.seq_len, rc.data_format)
    eval_examples = None
    if rc.eval_data:
        eval_examples = load_examples(tokenizer, rc.eval_data, rc.seq_len, rc.data_format)
    elif rc.eval_fraction > 0:
        train, eval_examples = split_eval(train, rc.eval_fraction, cfg.seed)
    teacher = None
    if teacher_dir is not None and rc.distill.enabled:
        teacher_dtype = (
            "float32" if resolve_mixed_precision(rc.mixed_precision) == "no" else "bfloat16"
        )
        teacher, _ = load_model(teacher_dir, dtype=teacher_dtype)
    before = sparsity_report(model, cfg.prune.exclude)
    ckpt_dir = recover_checkpoint_dir(cfg, out_dir)
    structured = _is_structured(cfg.prune.method)
    result = recover_model(
        model,
        tokenizer,
        train,
        rc,
        teacher=teacher,
        eval_examples=eval_examples,
        exclude=cfg.prune.exclude,
        nm=cfg.prune.nm,
        seed=cfg.seed,
        checkpoint_dir=ckpt_dir,
        reference_dir=model_dir,
        keep_masks=not structured,
        progress=progress,
    )
    report = result.report
    if not result.is_main_process:
        return report
    model = result.model
    if result.state_dict is not None:  # FSDP: a plain model holding the gathered full weights
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(result.model.config)
        model.load_state_dict(result.state_dict)
    after = sparsity_report(model, cfg.prune.exclude)
    report.update(
        enabled=True,
        sparsity_before=before["sparsity"],
        sparsity_after=after["sparsity"],
        checkpoint_dir=str(ckpt_dir),
    )
    model.to(dtype=DTYPES[cfg.model.dtype])  # trained in float32, saved in the run's dtype
    lineage = read_lineage(model_dir)
    lineage["recover"] = report
    save_with_lineage(model, tokenizer, out_dir, cfg, lineage)
    _remove_checkpoints(ckpt_dir)  # the run is complete: its checkpoints are spent
    progress(
        f"recovered in {report['steps']} steps: loss {report['losses'][0]:.4f} -> {report['final_loss']:.4f}, "
        f"sparsity {before['sparsity']:.4f} -> {after['sparsity']:.4f}"
    )
    return report
