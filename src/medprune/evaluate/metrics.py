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


#: Visit-note metrics (``results["visit_notes"]``) under their gate names.
NOTE_METRICS = (
    "rouge1",
    "rouge2",
    "rougeLsum",
    "section_coverage",
    "hallucination_rate",
    "omission_rate",
    "reference_hallucination_rate",
)


def source_metric(metric: str, source: str) -> str:
    """The name of a metric of one multiple-choice source: ``accuracy@pubmedqa``."""
    return f"{metric}@{source}"


def _mcq_values(mcq: dict, suffix: str = "") -> dict[str, float]:
    out = {
        f"accuracy{suffix}": mcq["acc"],
        f"accuracy_norm{suffix}": mcq["acc_norm"],
        f"mcq_items{suffix}": mcq["n"],
    }
    classes = mcq.get("classes")
    if classes:
        out[f"macro_f1{suffix}"] = classes["macro_f1"]
        out[f"majority_baseline{suffix}"] = classes["majority_baseline"]
    return out


def metric_values(results: dict) -> dict[str, float]:
    """Every scalar of an evaluation under its gate name (``accuracy``, ``perplexity``,
    ``rouge_l``, ``latency_ms_p95``, ``accuracy_<category>``, ``accuracy@<source>``,
    ``rougeLsum``, ``hallucination_rate``, ...)."""
    out: dict[str, float] = {}
    mcq = results.get("mcq")
    if mcq:
        out.update(_mcq_values(mcq))
        for cat, v in mcq["per_category"].items():
            out[f"accuracy_{category_key(cat)}"] = v["acc"]
    for name, source in (results.get("mcq_sources") or {}).items():
        out.update(_mcq_values(source, "@" + name))
    notes = results.get("visit_notes")
    if notes:
        for key in NOTE_METRICS:
            out[key] = notes[key]
        out["note_items"] = notes["n"]
    judge = results.get("judge")
    if judge and judge.get("complete"):
        for key, value in judge.get("metrics", {}).items():
            out[key] = value
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
