"""The recover stage: fine-tune the pruned model back towards the dense one, masks kept."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.io.atomic import copy_complete_directory, is_complete
from medprune.io.fuse import gcs_fuse_path, localize
from medprune.load.lineage import read_lineage, save_with_lineage
from medprune.load.model import DTYPES, load_model
from medprune.progress import Progress
from medprune.prune.apply import sparsity_report

if TYPE_CHECKING:
    from medprune.recover.data import TrainExamples
    from medprune.recover.teacher_data import TeacherCorpus


def recover_checkpoint_dir(cfg: RunConfig, out_dir: str | Path) -> Path:
    """Where recovery checkpoints go: ``recover.checkpoint_dir`` (gs:// read as /gcs/...),
    else a folder beside the output model, which a retried task finds again."""
    if cfg.recover.checkpoint_dir:
        return Path(gcs_fuse_path(cfg.recover.checkpoint_dir))
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
    with contextlib.suppress(OSError):
        ckpt_dir.rmdir()  # only if nothing else is in it


def teacher_cache_dir(cfg: RunConfig) -> Path:
    """Where the teacher's text is cached: ``recover.teacher_data.cache_dir`` (gs:// read as
    /gcs/...), else ``OUTPUT_DIR/teacher-data``, shared by every run and search candidate
    with the same teacher and settings."""
    td = cfg.recover.teacher_data
    assert td is not None
    return Path(gcs_fuse_path(td.cache_dir or f"{cfg.output_dir.rstrip('/')}/teacher-data"))


def _with_teacher_text(
    cfg: RunConfig,
    domain: TrainExamples | None,
    teacher,
    tokenizer,
    teacher_dir: str | Path,
    *,
    progress: Progress,
) -> tuple[TeacherCorpus, TrainExamples]:
    """The teacher's text for this run (cached), mixed with the domain examples at
    ``recover.teacher_data.mix``."""
    from medprune.load.fingerprint import local_fingerprint
    from medprune.recover.data import mix_examples
    from medprune.recover.teacher_data import teacher_corpus

    rc = cfg.recover
    td = rc.teacher_data
    assert td is not None
    domain_sha = None
    if rc.data:
        domain_sha = hashlib.sha256(localize(rc.data).read_bytes()).hexdigest()
    corpus = teacher_corpus(
        teacher,
        tokenizer,
        td,
        seq_len=rc.seq_len,
        domain=domain,
        domain_sha256=domain_sha,
        teacher_fingerprint=local_fingerprint(teacher_dir),
        cache_dir=teacher_cache_dir(cfg),
        seed=cfg.seed,
        progress=progress,
    )
    if domain is None or td.mix >= 1:
        return corpus, corpus.examples
    mixed = mix_examples(
        {"domain": domain, "teacher": corpus.examples},
        {"domain": 1 - td.mix, "teacher": td.mix},
        cfg.seed,
    )
    return corpus, mixed


def _checked_teacher_layers(cfg: RunConfig, model, teacher, model_dir: str | Path) -> list[int]:
    """The teacher layer of each student layer, from the pruned model's lineage, checked
    against both models before any teacher text is written or any step is trained."""
    from medprune.recover.layers import hidden_state_pairs, teacher_layer_map

    student_n = model.config.get_text_config().num_hidden_layers
    teacher_n = teacher.config.get_text_config().num_hidden_layers
    layers = teacher_layer_map(read_lineage(model_dir), student_n, teacher_n)
    hidden_state_pairs(model, teacher, cfg.recover.distill.hidden_layers, layers)
    return layers


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
    if not rc.data and rc.teacher_data is None:
        raise MedpruneError(
            "recover.data: set a JSONL of {text} or {prompt, response} to fine-tune on "
            "(or recover.teacher_data), or recover.enabled: false"
        )
    done = read_lineage(out_dir).get("recover")
    if done and done.get("complete") and is_complete(out_dir):
        progress(f"recovery already finished in {out_dir} (a retried task): keeping it")
        return done
    model, tokenizer = load_model(model_dir, dtype="float32")  # float32 master weights
    train = load_examples(tokenizer, rc.data, rc.seq_len, rc.data_format) if rc.data else None
    eval_examples = None
    if rc.eval_data:
        eval_examples = load_examples(tokenizer, rc.eval_data, rc.seq_len, rc.data_format)
    elif rc.eval_fraction > 0 and train is not None:
        train, eval_examples = split_eval(train, rc.eval_fraction, cfg.seed)
    teacher = None
    if teacher_dir is not None and rc.distill.enabled:
        teacher_dtype = (
            "float32" if resolve_mixed_precision(rc.mixed_precision) == "no" else "bfloat16"
        )
        teacher, _ = load_model(teacher_dir, dtype=teacher_dtype)
    teacher_layers = None
    if teacher is not None and rc.distill.hidden_weight > 0:
        teacher_layers = _checked_teacher_layers(cfg, model, teacher, model_dir)
    corpus = None
    if rc.teacher_data is not None:
        if teacher is None or teacher_dir is None:
            raise MedpruneError(
                "recover.teacher_data: the dense model must be given as the teacher "
                "(the pipeline passes it; recover.distill.enabled must be true)"
            )
        corpus, train = _with_teacher_text(
            cfg, train, teacher, tokenizer, teacher_dir, progress=progress
        )
    assert train is not None
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
        teacher_layers=teacher_layers,
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
    if corpus is not None:
        from medprune.recover.data import origin_shares

        samples = report["steps"] * rc.grad_accum * report["num_processes"] * rc.batch_size
        report["teacher_data"] = corpus.summary()
        report["data_shares"] = origin_shares(train, samples, cfg.seed)
        progress(
            "recovery data: "
            + ", ".join(
                f"{name} {share:.0%} of sequences" for name, share in report["data_shares"].items()
            )
        )
    report.update(
        enabled=True,
        sparsity_before=before["sparsity"],
        sparsity_after=after["sparsity"],
        checkpoint_dir=str(ckpt_dir),
    )
    model.to(dtype=DTYPES[cfg.model.dtype])  # trained in float32, saved in the run's dtype
    lineage = read_lineage(model_dir)
    lineage["recover"] = report
    save_with_lineage(model, tokenizer, out_dir, cfg, lineage, terms_from=model_dir)
    _remove_checkpoints(ckpt_dir)  # the run is complete: its checkpoints are spent
    progress(
        f"recovered in {report['steps']} steps: loss {report['losses'][0]:.4f} -> {report['final_loss']:.4f}, "
        f"sparsity {before['sparsity']:.4f} -> {after['sparsity']:.4f}"
    )
    return report
