"""Evaluate one model directory on the configured clinical data and write the results."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from medprune.config import EvaluateConfig
from medprune.evaluate.efficiency import efficiency_report
from medprune.evaluate.mcq import load_mcq, score_mcq
from medprune.evaluate.perplexity import perplexity
from medprune.io.atomic import atomic_write_json
from medprune.io.jsonl import read_texts, write_jsonl
from medprune.load.model import load_model

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"


def evaluate_model(
    model_dir: str | Path,
    cfg: EvaluateConfig,
    out_dir: str | Path,
    *,
    label: str,
    dtype: str = "float32",
    progress: Callable[[str], None] = print,
) -> dict:
    """Evaluate the model in ``model_dir``; write ``results.json`` and ``predictions.jsonl``
    (one line per MCQ item) into ``out_dir`` and return the results.

    Data files are read before the model is loaded, so bad data fails fast.
    """
    items = load_mcq(cfg.mcq, cfg.max_items) if cfg.mcq else None
    texts = read_texts(cfg.perplexity)[: cfg.max_ppl_texts] if cfg.perplexity else None
    t0 = time.perf_counter()
    model, tokenizer = load_model(model_dir, dtype=dtype)
    results: dict = {"label": label, "model_dir": str(model_dir), "complete": False}
    if items is not None:
        progress(f"[{label}] scoring {len(items)} multiple-choice items")
        mcq = score_mcq(model, tokenizer, items, batch_size=cfg.batch_size, max_length=cfg.seq_len)
        results["mcq"] = {k: v for k, v in asdict(mcq).items() if k != "predictions"}
        write_jsonl(Path(out_dir) / PREDICTIONS_FILE, mcq.predictions)
        progress(f"[{label}] accuracy {mcq.acc:.3f} (acc_norm {mcq.acc_norm:.3f}) on {mcq.n} items")
    if texts is not None:
        progress(f"[{label}] perplexity on {len(texts)} texts")
        ppl = perplexity(model, tokenizer, texts, max_length=cfg.seq_len, batch_size=cfg.batch_size)
        results["perplexity"] = asdict(ppl)
        progress(f"[{label}] perplexity {ppl.perplexity:.2f} over {ppl.tokens} tokens")
    results["efficiency"] = efficiency_report(model, model_dir)
    results["eval_seconds"] = time.perf_counter() - t0
    results["complete"] = True
    atomic_write_json(Path(out_dir) / RESULTS_FILE, results)
    return results


def flat_metrics(results: dict, prefix: str) -> dict[str, float]:
    """Scalars of an evaluation as ``{prefix}_{name}``, for kfp Metrics and tables."""
    out: dict[str, float] = {}
    mcq = results.get("mcq")
    if mcq:
        out[f"{prefix}_accuracy"] = mcq["acc"]
        out[f"{prefix}_accuracy_norm"] = mcq["acc_norm"]
        for cat, v in mcq["per_category"].items():
            out[f"{prefix}_accuracy_{cat}"] = v["acc"]
    if results.get("perplexity"):
        out[f"{prefix}_perplexity"] = results["perplexity"]["perplexity"]
    for k, v in results.get("efficiency", {}).items():
        out[f"{prefix}_{k}"] = float(v)
    return out
