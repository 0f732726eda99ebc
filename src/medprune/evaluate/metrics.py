"""Scalars of an evaluation under stable names, for the gate, kfp Metrics and reports.

Pure dictionary work (no torch), so the gate and the report import it cheaply.
"""

from __future__ import annotations

import re


def category_key(category: str) -> str:
    """A category as a metric-name fragment: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") or "none"


_EFFICIENCY_METRICS = (
    "total_params",
    "nonzero_params",
    "sparsity",
    "size_bytes",
    "latency_ms_p50",
    "latency_ms_p95",
    "tokens_per_s",
    "peak_memory_bytes",
)


def metric_values(results: dict) -> dict[str, float]:
    """Every scalar of an evaluation under its gate name (``accuracy``, ``perplexity``,
    ``rouge_l``, ``latency_ms_p95``, ``accuracy_<category>``, ...)."""
    out: dict[str, float] = {}
    mcq = results.get("mcq")
    if mcq:
        out["accuracy"] = mcq["acc"]
        out["accuracy_norm"] = mcq["acc_norm"]
        out["mcq_items"] = mcq["n"]
        for cat, v in mcq["per_category"].items():
            out[f"accuracy_{category_key(cat)}"] = v["acc"]
    ppl = results.get("perplexity")
    if ppl:
        out["perplexity"] = ppl["perplexity"]
        if "bits_per_byte" in ppl:
            out["bits_per_byte"] = ppl["bits_per_byte"]
        out["perplexity_tokens"] = ppl["tokens"]
    gen = results.get("generation")
    if gen:
        out["rouge_l"] = gen["rouge_l"]
        out["exact_match"] = gen["exact_match"]
        out["generation_items"] = gen["n"]
    eff = results.get("efficiency", {})
    for key in _EFFICIENCY_METRICS:
        if key in eff:
            out[key] = eff[key]
    if "eval_seconds" in results:
        out["eval_seconds"] = results["eval_seconds"]
    return {k: float(v) for k, v in out.items()}


def flat_metrics(results: dict, prefix: str) -> dict[str, float]:
    """Scalars of an evaluation as ``{prefix}_{name}``, for kfp Metrics and tables."""
    return {f"{prefix}_{k}": v for k, v in metric_values(results).items()}
