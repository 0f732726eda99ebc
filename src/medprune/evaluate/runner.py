"""Evaluate one model directory on the configured clinical data and write the results.

An evaluation directory holds:

* ``results.json``: the settings (with a SHA-256 of every data file, so two evaluations can
  be checked to be on identical items), the scores of each task, efficiency, and
  ``complete: true`` once everything finished;
* ``predictions.jsonl``: one line per multiple-choice item (prediction, correctness and every
  option's log-likelihood), so any number traces back to items;
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

from medprune.config import EvaluateConfig
from medprune.evaluate.efficiency import efficiency_report
from medprune.evaluate.generation import load_generation, score_generation
from medprune.evaluate.mcq import load_mcq, score_mcq
from medprune.evaluate.metrics import category_key, flat_metrics, metric_values
from medprune.evaluate.perplexity import perplexity
from medprune.io.atomic import atomic_write_json
from medprune.io.jsonl import read_texts, write_jsonl
from medprune.load.model import load_model

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
GENERATIONS_FILE = "generations.jsonl"


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
        name: file_sha256(path) for name in ("mcq", "perplexity", "summarization") if (path := getattr(cfg, name))
    }
    # file locations and thread counts do not change the numbers
    for key in ("mcq", "perplexity", "summarization", "num_threads"):
        settings.pop(key, None)
    return settings


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
    items = load_mcq(cfg.mcq, cfg.max_items, fmt=cfg.mcq_format, cop_base=cfg.medmcqa_cop_base) if cfg.mcq else None
    texts = read_texts(cfg.perplexity)[: cfg.max_ppl_texts] if cfg.perplexity else None
    gen_items = load_generation(cfg.summarization, cfg.max_generation_items) if cfg.summarization else None
    settings = evaluation_settings(cfg, dtype)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    model, tokenizer = load_model(model_dir, dtype=dtype)
    results: dict = {"label": label, "model_dir": str(model_dir), "complete": False, "settings": settings}
    if items is not None:
        progress(f"[{label}] scoring {len(items)} multiple-choice items")
        t = time.perf_counter()
        mcq = score_mcq(model, tokenizer, items, batch_size=cfg.batch_size, max_length=cfg.seq_len)
        results["mcq"] = {k: v for k, v in asdict(mcq).items() if k != "predictions"}
        results["mcq"]["seconds"] = time.perf_counter() - t
        write_jsonl(out_dir / PREDICTIONS_FILE, mcq.predictions)
        progress(f"[{label}] accuracy {mcq.acc:.3f} (acc_norm {mcq.acc_norm:.3f}) on {mcq.n} items")
    if texts is not None:
        progress(f"[{label}] perplexity on {len(texts)} texts")
        ppl = perplexity(model, tokenizer, texts, max_length=cfg.seq_len, stride=cfg.ppl_stride, batch_size=cfg.batch_size)
        results["perplexity"] = asdict(ppl)
        progress(f"[{label}] perplexity {ppl.perplexity:.2f} ({ppl.bits_per_byte:.3f} bits/byte) over {ppl.tokens} tokens")
    if gen_items is not None:
        progress(f"[{label}] generating for {len(gen_items)} items (max {cfg.max_new_tokens} new tokens)")
        gen = score_generation(
            model, tokenizer, gen_items, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, max_length=cfg.seq_len
        )
        results["generation"] = {k: v for k, v in asdict(gen).items() if k != "predictions"}
        write_jsonl(out_dir / GENERATIONS_FILE, gen.predictions)
        progress(f"[{label}] ROUGE-L {gen.rouge_l:.3f}, exact match {gen.exact_match:.3f} on {gen.n} items")
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
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = [
    "GENERATIONS_FILE",
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "category_key",
    "evaluate_model",
    "flat_metrics",
    "metric_values",
    "read_predictions",
    "read_results",
]
