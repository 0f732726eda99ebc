"""Multiple-choice scoring by log-likelihood, the lm-evaluation-harness way.

For each item, every option is scored as the continuation of the question: the summed
log-probability of the option's tokens given the question (``acc``), and the same divided by
the option's length in bytes (``acc_norm``). The prediction is the arg-max option.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from medprune.errors import DataError
from medprune.io.jsonl import read_jsonl, require_field


@dataclass(frozen=True)
class MCQItem:
    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    category: str = "all"


@dataclass
class MCQResult:
    acc: float
    acc_norm: float
    n: int
    per_category: dict[str, dict[str, float]]
    predictions: list[dict] = field(default_factory=list)


def _parse_answer(path: Path, lineno: int, answer, options: Sequence[str]) -> int:
    if isinstance(answer, bool):
        raise DataError(f"{path}:{lineno}: field 'answer' must be an option index, letter or option text")
    if isinstance(answer, int):
        index = answer
    elif isinstance(answer, str) and len(answer) == 1 and answer.upper() in "ABCDEFGHIJ":
        index = ord(answer.upper()) - ord("A")
    elif isinstance(answer, str) and answer in options:
        index = list(options).index(answer)
    else:
        raise DataError(f"{path}:{lineno}: field 'answer' {answer!r} is not an index, letter or option text")
    if not 0 <= index < len(options):
        raise DataError(f"{path}:{lineno}: field 'answer' {answer!r} is out of range for {len(options)} options")
    return index


def load_mcq(path: str | Path, max_items: int | None = None) -> list[MCQItem]:
    """Read ``{question, options, answer, category?, id?}`` items from JSONL.

    ``answer`` may be an index, a letter (``"B"``) or the text of the right option.
    """
    path = Path(path)
    items = []
    seen: set[str] = set()
    for lineno, rec in read_jsonl(path):
        question = require_field(path, lineno, rec, "question", str)
        options = require_field(path, lineno, rec, "options", list)
        if len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
            raise DataError(f"{path}:{lineno}: field 'options' must be a list of at least 2 non-empty strings")
        answer = _parse_answer(path, lineno, rec.get("answer"), options) if "answer" in rec else None
        if answer is None:
            raise DataError(f"{path}:{lineno}: missing field 'answer'")
        item_id = str(rec.get("id", f"{path.stem}-{lineno}"))
        if item_id in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {item_id!r}")
        seen.add(item_id)
        category = rec.get("category", "all")
        if not isinstance(category, str) or not category:
            raise DataError(f"{path}:{lineno}: field 'category' must be a non-empty string")
        items.append(MCQItem(item_id, question, tuple(options), answer, category))
        if max_items is not None and len(items) >= max_items:
            break
    return items


def _encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split as lm-evaluation-harness does: encode the
    whole string and the context, and take the continuation as the tail of the whole."""
    n_space = len(context) - len(context.rstrip())
    if n_space:  # move trailing spaces of the context onto the continuation
        continuation = context[-n_space:] + continuation
        context = context[:-n_space]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False):
        whole = [tokenizer.bos_token_id] + whole
        ctx = [tokenizer.bos_token_id] + ctx
    return whole[: len(ctx)], whole[len(ctx) :]


@torch.no_grad()
def loglikelihoods(
    model,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Summed log p(continuation | context) for each ``(context, continuation)`` request."""
    device = next(model.parameters()).device
    encoded = []
    for context, continuation in requests:
        ctx, cont = _encode_pair(tokenizer, context, continuation)
        if not cont:
            raise DataError(f"empty continuation for context {context[:60]!r}")
        tokens = (ctx + cont)[-(max_length + 1) :]
        encoded.append((tokens, len(cont)))
    # longest first: fewer pad tokens per batch and out-of-memory shows up at once
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    results = [0.0] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        batch = [order[i] for i in range(start, min(start + batch_size, len(order)))]
        inputs = [encoded[i][0][:-1] for i in batch]
        width = max(len(x) for x in inputs)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for row, x in enumerate(inputs):
            ids[row, : len(x)] = torch.tensor(x)
            attn[row, : len(x)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
        logprobs = F.log_softmax(logits, dim=-1)
        for row, i in enumerate(batch):
            tokens, n_cont = encoded[i]
            targets = torch.tensor(tokens[-n_cont:], device=device)
            positions = torch.arange(len(tokens) - 1 - n_cont, len(tokens) - 1, device=device)
            results[i] = float(logprobs[row, positions, targets].sum())
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return results


def score_mcq(
    model,
    tokenizer,
    items: Sequence[MCQItem],
    *,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> MCQResult:
    """Score every item; ``acc`` uses summed log-likelihood, ``acc_norm`` divides it by the
    option's length in bytes."""
    if not items:
        raise DataError("no multiple-choice items to score")
    requests = [(item.question, " " + opt) for item in items for opt in item.options]
    lls = loglikelihoods(model, tokenizer, requests, batch_size=batch_size, max_length=max_length, progress=progress)
    predictions = []
    cursor = 0
    per_cat: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for item in items:
        ll = lls[cursor : cursor + len(item.options)]
        cursor += len(item.options)
        norm = [v / len((" " + o).encode("utf-8")) for v, o in zip(ll, item.options)]
        pred = max(range(len(ll)), key=lambda k: (ll[k], -k))
        pred_norm = max(range(len(norm)), key=lambda k: (norm[k], -k))
        correct, correct_norm = pred == item.answer, pred_norm == item.answer
        per_cat[item.category].append((correct, correct_norm))
        predictions.append(
            {
                "id": item.id,
                "category": item.category,
                "answer": item.answer,
                "pred": pred,
                "pred_norm": pred_norm,
                "correct": correct,
                "correct_norm": correct_norm,
                "loglikelihoods": ll,
            }
        )
    n = len(items)
    return MCQResult(
        acc=sum(p["correct"] for p in predictions) / n,
        acc_norm=sum(p["correct_norm"] for p in predictions) / n,
        n=n,
        per_category={
            cat: {
                "acc": sum(c for c, _ in v) / len(v),
                "acc_norm": sum(c for _, c in v) / len(v),
                "n": len(v),
            }
            for cat, v in sorted(per_cat.items())
        },
        predictions=predictions,
    )


def is_finite(x: float) -> bool:
    return math.isfinite(x)
