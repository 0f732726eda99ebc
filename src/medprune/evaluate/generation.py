"""Generation tasks (summaries, short answers): greedy decoding scored by ROUGE-L and
exact match against a reference.

Data: JSONL of ``{input, reference, id?, category?}``. The model continues ``input`` as
given (put any instruction in it), greedily, for at most ``max_new_tokens`` tokens.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medprune.errors import DataError
from medprune.io.jsonl import read_jsonl, require_field


@dataclass(frozen=True)
class GenerationItem:
    id: str
    input: str
    reference: str
    category: str = "all"


@dataclass
class GenerationResult:
    rouge_l: float  # mean ROUGE-L F1
    exact_match: float
    n: int
    max_new_tokens: int
    per_category: dict[str, dict[str, float]]
    predictions: list[dict] = field(default_factory=list)


def load_generation(path: str | Path, max_items: int | None = None) -> list[GenerationItem]:
    """Read ``{input, reference, id?, category?}`` items; errors name file, line and field."""
    path = Path(path)
    items: list[GenerationItem] = []
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(path):
        values = {}
        for name in ("input", "reference"):
            value = require_field(path, lineno, rec, name, str)
            if not value.strip():
                raise DataError(f"{path}:{lineno}: field '{name}' is empty")
            values[name] = value
        item_id = rec.get("id", f"{path.stem}-{lineno}")
        if (
            isinstance(item_id, bool)
            or not isinstance(item_id, (str, int))
            or str(item_id).strip() == ""
        ):
            raise DataError(
                f"{path}:{lineno}: field 'id' must be a non-empty string or integer, got {item_id!r}"
            )
        item_id = str(item_id)
        if item_id in seen:
            raise DataError(
                f"{path}:{lineno}: field 'id' duplicate id {item_id!r} (first on line {seen[item_id]})"
            )
        seen[item_id] = lineno
        category = rec.get("category", "all")
        if not isinstance(category, str) or not category.strip():
            raise DataError(
                f"{path}:{lineno}: field 'category' must be a non-empty string, got {category!r}"
            )
        items.append(
            GenerationItem(item_id, values["input"], values["reference"], category.strip())
        )
        if max_items is not None and len(items) >= max_items:
            break
    return items


def normalize_answer(text: str) -> str:
    """Lower case, no surrounding punctuation, single spaces: what exact match compares."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,;:!?\"'")


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (``rouge-score``, with stemming)."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


@torch.inference_mode()
def generate_greedy(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_length: int = 2048,
) -> list[tuple[str, int]]:
    """Greedy continuations of ``prompts`` (left padded batches, stop at EOS), each with the
    number of tokens generated (EOS and padding not counted)."""
    encoded = [list(tokenizer(p)["input_ids"])[-(max_length - max_new_tokens) :] for p in prompts]
    return generate_greedy_ids(
        model, tokenizer, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size
    )


@torch.inference_mode()
def generate_greedy_ids(
    model,
    tokenizer,
    encoded: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, int]]:
    """Greedy continuations of already tokenized prompts (longest first, left padded
    batches, stop at EOS), each with the number of tokens generated."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs: list[tuple[str, int]] = [("", 0)] * len(encoded)
    stop = {t for t in (tokenizer.eos_token_id, pad) if t is not None}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(batch):
            ids[row, width - len(encoded[i]) :] = torch.tensor(list(encoded[i]))
            mask[row, width - len(encoded[i]) :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            n = next((k for k, t in enumerate(new) if t in stop), len(new))
            outputs[i] = (tokenizer.decode(new[:n], skip_special_tokens=True), n)
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return outputs


def score_generation(
    model,
    tokenizer,
    items: Sequence[GenerationItem],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """Generate for every item and score ROUGE-L F1 and exact match against the reference."""
    if not items:
        raise DataError("no generation items to score")
    outputs = generate_greedy(
        model,
        tokenizer,
        [it.input for it in items],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_length=max_length,
    )
    predictions = []
    per_cat: dict[str, list[tuple[float, bool]]] = {}
    for item, (output, n_new) in zip(items, outputs, strict=True):
        rl = rouge_l(output, item.reference)
        em = normalize_answer(output) == normalize_answer(item.reference)
        per_cat.setdefault(item.category, []).append((rl, em))
        predictions.append(
            {
                "id": item.id,
                "category": item.category,
                "reference": item.reference,
                "prediction": output,
                "new_tokens": n_new,
                "rouge_l": rl,
                "exact_match": em,
            }
        )
    if progress:
        progress(len(items), len(items))
    n = len(items)
    return GenerationResult(
        rouge_l=sum(p["rouge_l"] for p in predictions) / n,
        exact_match=sum(p["exact_match"] for p in predictions) / n,
        n=n,
        max_new_tokens=max_new_tokens,
        per_category={
            cat: {
                "rouge_l": sum(r for r, _ in v) / len(v),
                "exact_match": sum(e for _, e in v) / len(v),
                "n": len(v),
            }
            for cat, v in sorted(per_cat.items())
        },
        predictions=predictions,
    )
