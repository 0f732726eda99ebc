"""Evaluate one model directory on the configured clinical data and write the results.

An evaluation directory holds:

* ``results.json``: the settings (with a SHA-256 of every data file, so two evaluations can
  be checked to be on identical items), the scores of each task, efficiency, and
  ``complete: true`` once everything finished;
* ``predictions.jsonl``: one line per multiple-choice item (prediction, correctness and every
  option's log-likelihood), so any number traces back to items;
* ``predictions-NAME.jsonl``: the same for each extra multiple-choice source
  (``evaluate.mcq_sources``, e.g. PubMedQA), whose scores are reported on their own;
* ``notes.jsonl``: one line per visit-note dialogue (the generated note, ROUGE, sections,
  unsupported and omitted concepts, tokens generated and cut);
* ``generations.jsonl``: one line per generation item (output, ROUGE-L, exact match).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from medprune.config import EvaluateConfig, MCQSourceConfig
from medprune.errors import ModelLoadError
from medprune.evaluate.classes import label_metrics
from medprune.evaluate.concepts import hpo_vocabulary
from medprune.evaluate.efficiency import efficiency_report
from medprune.evaluate.generation import load_generation, score_generation
from medprune.evaluate.judge import ClaudeJudge
from medprune.evaluate.mcq import load_mcq, score_mcq
from medprune.evaluate.metrics import category_key, flat_metrics, metric_values
from medprune.evaluate.note_formats import detect_note_format, load_visit_notes
from medprune.evaluate.perplexity import perplexity
from medprune.evaluate.summarization import build_note_prompts, prompts_sha256, score_visit_notes
from medprune.io.atomic import atomic_write_json
from medprune.io.jsonl import read_texts, write_jsonl
from medprune.load.model import load_model

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
GENERATIONS_FILE = "generations.jsonl"
NOTES_FILE = "notes.jsonl"


def source_predictions_file(name: str) -> str:
    """Per-item predictions of the extra multiple-choice source ``name``."""
    return f"predictions-{name}.jsonl"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation_settings(cfg: EvaluateConfig, dtype: str) -> dict:
    """Everything that must be equal for two evaluations to be comparable."""
    settings = json.loads(cfg.model_dump_json())
    settings["dtype"] = dtype
    settings["data_sha256"] = {
        name: file_sha256(path)
        for name in ("mcq", "perplexity", "summarization")
        if (path := getattr(cfg, name))
    }
    for source, raw in zip(cfg.mcq_sources, settings.get("mcq_sources", []), strict=True):
        raw["data_sha256"] = file_sha256(source.data)
        raw.pop("data")
    if cfg.visit_notes is not None:
        settings["visit_notes"]["data_sha256"] = file_sha256(cfg.visit_notes.data)
        settings["visit_notes"].pop("data")
    # file locations and thread counts do not change the numbers
    for key in ("mcq", "perplexity", "summarization", "num_threads"):
        settings.pop(key, None)
    return settings


def _load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir}: cannot load tokenizer: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _mcq_summary(mcq) -> dict:
    out = {k: v for k, v in asdict(mcq).items() if k != "predictions"}
    classes = label_metrics(mcq.predictions)
    if classes is not None:
        out["classes"] = classes
    return out


def _load_source(source: MCQSourceConfig):
    return load_mcq(
        source.data, source.max_items, fmt=source.format, cop_base=source.medmcqa_cop_base
    )


def evaluate_model(
    model_dir: str | Path,
    cfg: EvaluateConfig,
    out_dir: str | Path,
    *,
    label: str,
    dtype: str = "float32",
    progress: Callable[[str], None] = print,
) -> dict:
    """Evaluate the model in ``model_dir``; write ``results.json``, ``predictions.jsonl``
    (MCQ) and ``generations.jsonl`` (generation) into ``out_dir`` and return the results.

    Data files are read before the model is loaded, so bad data fails fast. ``results.json``
    says ``complete: true`` only when every configured task finished.
    """
    out_dir = Path(out_dir)
    items = (
        load_mcq(cfg.mcq, cfg.max_items, fmt=cfg.mcq_format, cop_base=cfg.medmcqa_cop_base)
        if cfg.mcq
        else None
    )
    texts = read_texts(cfg.perplexity)[: cfg.max_ppl_texts] if cfg.perplexity else None
    gen_items = (
        load_generation(cfg.summarization, cfg.max_generation_items) if cfg.summarization else None
    )
    sources = [(source, _load_source(source)) for source in cfg.mcq_sources]
    notes_cfg = cfg.visit_notes
    note_items = note_prompts = vocab = None
    if notes_cfg is not None:
        note_items = load_visit_notes(notes_cfg.data, notes_cfg.max_items, fmt=notes_cfg.format)
        vocab = hpo_vocabulary()
        fmt = notes_cfg.format if notes_cfg.format != "auto" else detect_note_format(notes_cfg.data)
        note_prompts = build_note_prompts(
            _load_tokenizer(model_dir),
            note_items,
            instruction=notes_cfg.instruction,
            prompt_style=notes_cfg.prompt_style,
            instruction_position=notes_cfg.instruction_position,
            speaker_labels=notes_cfg.speaker_labels,
            max_input_tokens=notes_cfg.max_input_tokens,
            truncate=notes_cfg.truncate,
            source=str(notes_cfg.data),
            field="src" if fmt == "aci" else "input",
            warn=lambda m: progress(f"[{label}] WARNING {m}"),
        )
    # the judge's permission and key are checked before any model work; the key stays in the client
    judge = ClaudeJudge.from_config(cfg.judge) if cfg.judge.enabled else None
    settings = evaluation_settings(cfg, dtype)
    if note_prompts is not None and vocab is not None:
        settings["visit_notes"]["prompts_sha256"] = prompts_sha256(note_prompts)
        settings["visit_notes"]["concept_vocabulary_sha256"] = vocab.sha256
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    model, tokenizer = load_model(model_dir, dtype=dtype)
    results: dict = {
        "label": label,
        "model_dir": str(model_dir),
        "complete": False,
        "settings": settings,
    }
    if items is not None:
        progress(f"[{label}] scoring {len(items)} multiple-choice items")
        t = time.perf_counter()
        mcq = score_mcq(model, tokenizer, items, batch_size=cfg.batch_size, max_length=cfg.seq_len)
        results["mcq"] = _mcq_summary(mcq)
        results["mcq"]["seconds"] = time.perf_counter() - t
        write_jsonl(out_dir / PREDICTIONS_FILE, mcq.predictions)
        progress(f"[{label}] accuracy {mcq.acc:.3f} (acc_norm {mcq.acc_norm:.3f}) on {mcq.n} items")
    for source, source_items in sources:
        progress(f"[{label}] scoring {len(source_items)} items of source {source.name!r}")
        t = time.perf_counter()
        scored = score_mcq(
            model, tokenizer, source_items, batch_size=cfg.batch_size, max_length=cfg.seq_len
        )
        summary = _mcq_summary(scored)
        summary["seconds"] = time.perf_counter() - t
        results.setdefault("mcq_sources", {})[source.name] = summary
        write_jsonl(out_dir / source_predictions_file(source.name), scored.predictions)
        extra = ""
        if "classes" in summary:
            c = summary["classes"]
            extra = f", macro-F1 {c['macro_f1']:.3f}, always-{c['majority_label']!r} baseline {c['majority_baseline']:.3f}"
        progress(f"[{label}] {source.name}: accuracy {scored.acc:.3f}{extra} on {scored.n} items")
    if (
        note_items is not None
        and note_prompts is not None
        and vocab is not None
        and notes_cfg is not None
    ):
        progress(
            f"[{label}] writing {len(note_items)} visit notes (max {notes_cfg.max_new_tokens} new tokens, "
            f"batch {notes_cfg.batch_size})"
        )
        t = time.perf_counter()
        notes = score_visit_notes(
            model,
            tokenizer,
            note_items,
            note_prompts,
            vocab,
            max_new_tokens=notes_cfg.max_new_tokens,
            batch_size=notes_cfg.batch_size,
            progress=lambda done, total: progress(f"[{label}] visit notes {done}/{total}"),
        )
        results["visit_notes"] = {k: v for k, v in asdict(notes).items() if k != "predictions"}
        results["visit_notes"]["seconds"] = time.perf_counter() - t
        if judge is not None:
            rated = notes.predictions[: cfg.judge.max_items]
            dialogues = {it.id: it.dialogue for it in note_items}
            progress(f"[{label}] judge {cfg.judge.model}: rating {len(rated)} notes")
            verdict = judge.judge_notes(
                [(r["id"], dialogues[r["id"]], r["prediction"]) for r in rated],
                progress=lambda m: progress(f"[{label}] {m}"),
            )
            results["judge"] = verdict.to_dict()
            by_id = {v["id"]: v for v in verdict.per_item}
            for row in notes.predictions:
                if row["id"] in by_id:
                    row["judge"] = {k: v for k, v in by_id[row["id"]].items() if k != "id"}
            u = verdict.usage
            progress(
                f"[{label}] judge {'complete' if verdict.complete else 'INCOMPLETE: ' + str(verdict.error)}: "
                f"{verdict.n} notes, {u.requests} requests ({u.retries} retries), {u.input_tokens} input + "
                f"{u.output_tokens} output tokens"
            )
        write_jsonl(out_dir / NOTES_FILE, notes.predictions)
        progress(
            f"[{label}] visit notes: ROUGE-1 {notes.rouge1:.3f}, ROUGE-2 {notes.rouge2:.3f}, ROUGE-Lsum "
            f"{notes.rougeLsum:.3f}, section coverage {notes.section_coverage:.3f}, hallucination rate "
            f"{notes.hallucination_rate:.3f}, omission rate {notes.omission_rate:.3f} on {notes.n} dialogues"
        )
    if texts is not None:
        progress(f"[{label}] perplexity on {len(texts)} texts")
        ppl = perplexity(
            model,
            tokenizer,
            texts,
            max_length=cfg.seq_len,
            stride=cfg.ppl_stride,
            batch_size=cfg.batch_size,
        )
        results["perplexity"] = asdict(ppl)
        progress(
            f"[{label}] perplexity {ppl.perplexity:.2f} ({ppl.bits_per_byte:.3f} bits/byte) over {ppl.tokens} tokens"
        )
    if gen_items is not None:
        progress(
            f"[{label}] generating for {len(gen_items)} items (max {cfg.max_new_tokens} new tokens)"
        )
        gen = score_generation(
            model,
            tokenizer,
            gen_items,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            max_length=cfg.seq_len,
        )
        results["generation"] = {k: v for k, v in asdict(gen).items() if k != "predictions"}
        write_jsonl(out_dir / GENERATIONS_FILE, gen.predictions)
        progress(
            f"[{label}] ROUGE-L {gen.rouge_l:.3f}, exact match {gen.exact_match:.3f} on {gen.n} items"
        )
    results["efficiency"] = efficiency_report(
        model,
        model_dir,
        batch_size=cfg.latency_batch_size,
        seq_len=cfg.latency_seq_len,
        repeats=cfg.latency_repeats,
    )
    results["eval_seconds"] = time.perf_counter() - t0
    results["complete"] = True
    atomic_write_json(out_dir / RESULTS_FILE, results)
    return results


def read_results(eval_dir: str | Path) -> dict:
    """``results.json`` of an evaluation directory; ``{"complete": False}`` when missing."""
    path = Path(eval_dir) / RESULTS_FILE
    if not path.is_file():
        return {"complete": False}
    return json.loads(path.read_text(encoding="utf-8"))


def read_predictions(eval_dir: str | Path, name: str = PREDICTIONS_FILE) -> list[dict] | None:
    """Per-item lines of an evaluation directory, or None when it has none."""
    path = Path(eval_dir) / name
    if not path.is_file():
        return None
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


__all__ = [
    "GENERATIONS_FILE",
    "NOTES_FILE",
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "category_key",
    "evaluate_model",
    "flat_metrics",
    "metric_values",
    "read_predictions",
    "read_results",
    "source_predictions_file",
]
