"""Multiple-choice scoring by log-likelihood, the lm-evaluation-harness way.

For each item every option is scored as the continuation of the item's context: the summed
log-probability of the option's tokens given the context. ``acc`` takes the arg-max of
that sum, ``acc_norm`` of the sum divided by the option's length in characters (both as in
lm-evaluation-harness 0.4, whose numbers ours equal: see ``tests/evaluate/test_parity.py``).

Speed: the options of one item share their context, so the context runs through the model
once and its key/value cache is reused for every option; logits are projected to log-probs
only where a continuation token is scored.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from medprune.errors import DataError
from medprune.evaluate.formats import FORMATS, LETTERS, MCQItem, detect_format, load_mcq

__all__ = [
    "FORMATS",
    "LETTERS",
    "MCQItem",
    "MCQResult",
    "detect_format",
    "encode_pair",
    "load_mcq",
    "loglikelihoods",
    "option_loglikelihoods",
    "score_mcq",
]

Progress = Callable[[int, int], None]


@dataclass
class MCQResult:
    acc: float
    acc_norm: float
    n: int
    per_category: dict[str, dict[str, float]]
    predictions: list[dict] = field(default_factory=list)


def _encode(tokenizer, text: str) -> list[int]:
    # The tokenizer's own special-token behaviour (BOS or not), as lm-evaluation-harness's
    # HFLM does when add_bos_token is not set; no second BOS if the text already has one.
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and ``continuation``, split as lm-evaluation-harness does:
    trailing spaces of the context move to the continuation; the continuation is the tail of
    the encoding of the whole string after as many tokens as the context alone has."""
    if not context:
        raise DataError("empty context: every option needs a question to continue")
    n_space = len(context) - len(context.rstrip())
    if n_space:
        continuation = context[-n_space:] + continuation
        context = context[:-n_space]
    whole = _encode(tokenizer, context + continuation)
    ctx = _encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


def _pad_token(tokenizer) -> int:
    for tok in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    return 0


@torch.inference_mode()
def option_loglikelihoods(
    model,
    tokenizer,
    contexts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Progress | None = None,
) -> list[list[float]]:
    """Summed log p(option | context) for every option of every context.

    ``batch_size`` contexts run per forward pass (their options together in a second one).
    Inputs longer than ``max_length`` tokens lose context tokens from the left.
    """
    if len(contexts) != len(options):
        raise ValueError("contexts and options differ in length")
    device = next(model.parameters()).device
    pad = _pad_token(tokenizer)
    groups: list[tuple[list[int], list[list[int]]]] = []
    for context, opts in zip(contexts, options, strict=True):
        ctx: list[int] = []
        conts: list[list[int]] = []
        for opt in opts:
            c, cont = encode_pair(tokenizer, context, opt)
            if not cont:
                raise DataError(
                    f"option {opt!r} encodes to no tokens after context {context[:60]!r}"
                )
            if ctx and c != ctx:  # cannot happen: the context is encoded alone
                raise AssertionError("options of one context encoded different contexts")
            ctx = c
            conts.append(cont)
        longest = max(len(c) for c in conts)
        if longest > max_length:
            raise DataError(
                f"an option of context {context[:60]!r} is {longest} tokens, over max_length {max_length}"
            )
        # lm-evaluation-harness keeps the last max_length + 1 tokens of context + continuation
        keep = max(1, max_length + 1 - longest)
        groups.append((ctx[-keep:], conts))

    # longest first: fewer pad tokens per batch, and running out of memory shows at once
    order = sorted(
        range(len(groups)), key=lambda g: -(len(groups[g][0]) + max(map(len, groups[g][1])))
    )
    results: list[list[float]] = [[] for _ in groups]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        scores = _score_batch(model, [groups[g] for g in batch], pad, device)
        for g, s in zip(batch, scores, strict=True):
            results[g] = s
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return results


def _cache_of(out):
    # transformers >= 5.2x names the key/value cache `cache`; earlier, `past_key_values`
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def _cache_kwarg(model) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _score_batch(model, groups, pad: int, device) -> list[list[float]]:
    # Pass 1: contexts, left padded, so that every context ends in the last column and its
    # cache can be extended by the options.
    width = max(len(ctx) for ctx, _ in groups)
    ids = torch.full((len(groups), width), pad, dtype=torch.long)
    mask = torch.zeros((len(groups), width), dtype=torch.long)
    for row, (ctx, _) in enumerate(groups):
        ids[row, width - len(ctx) :] = torch.tensor(ctx)
        mask[row, width - len(ctx) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    first = torch.log_softmax(
        out.logits[:, -1, :].float(), dim=-1
    )  # predicts each option's 1st token

    rows = [(g, cont) for g, (_, conts) in enumerate(groups) for cont in conts]
    lls = [float(first[g, cont[0]]) for g, cont in rows]
    rest = max(len(cont) for _, cont in rows) - 1
    if rest > 0:
        # Pass 2: every option's tokens but the last, on a copy of its context's cache.
        index = torch.tensor([g for g, _ in rows], device=device)
        cache = _cache_of(out)
        cache.reorder_cache(index)
        opt_ids = torch.full((len(rows), rest), pad, dtype=torch.long)
        opt_mask = torch.zeros((len(rows), rest), dtype=torch.long)
        targets = torch.zeros((len(rows), rest), dtype=torch.long)
        for r, (_, cont) in enumerate(rows):
            n = len(cont) - 1
            if n:
                opt_ids[r, :n] = torch.tensor(cont[:-1])
                opt_mask[r, :n] = 1
                targets[r, :n] = torch.tensor(cont[1:])
        opt_ids, opt_mask, targets = opt_ids.to(device), opt_mask.to(device), targets.to(device)
        ctx_len = mask.sum(-1)[index]
        pos2 = ctx_len[:, None] + torch.arange(rest, device=device)[None, :]
        full_mask = torch.cat([mask[index], opt_mask], dim=1)
        logits = model(
            input_ids=opt_ids,
            attention_mask=full_mask,
            position_ids=pos2,
            use_cache=True,
            **{_cache_kwarg(model): cache},
        ).logits
        sel = opt_mask.bool()
        picked = torch.log_softmax(logits[sel].float(), dim=-1).gather(-1, targets[sel][:, None])[
            :, 0
        ]
        per_row = torch.zeros(len(rows), dtype=torch.float64, device=device)
        per_row.index_add_(0, sel.nonzero()[:, 0], picked.double())
        for r, value in enumerate(per_row.tolist()):
            lls[r] += value
    scores: list[list[float]] = [[] for _ in groups]
    for (g, _), ll in zip(rows, lls, strict=True):
        scores[g].append(ll)
    return scores


def loglikelihoods(
    model,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Progress | None = None,
) -> list[float]:
    """Summed log p(continuation | context) for each ``(context, continuation)`` request
    (requests with the same context share one pass over it)."""
    by_context: dict[str, list[int]] = defaultdict(list)
    for i, (context, _) in enumerate(requests):
        by_context[context].append(i)
    contexts = list(by_context)
    options = [[requests[i][1] for i in by_context[c]] for c in contexts]
    scored = option_loglikelihoods(
        model,
        tokenizer,
        contexts,
        options,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
    )
    out = [0.0] * len(requests)
    for c, lls in zip(contexts, scored, strict=True):
        for i, ll in zip(by_context[c], lls, strict=True):
            out[i] = ll
    return out


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties (like numpy.argmax)."""
    return max(range(len(values)), key=lambda k: (values[k], -k))


def score_mcq(
    model,
    tokenizer,
    items: Sequence[MCQItem],
    *,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Progress | None = None,
) -> MCQResult:
    """Score every item. Each option is the continuation ``" " + option`` of the item's
    context; ``acc`` uses the summed log-likelihood, ``acc_norm`` divides it by the option's
    length in characters. Per-item predictions keep every log-likelihood."""
    if not items:
        raise DataError("no multiple-choice items to score")
    lls_all = option_loglikelihoods(
        model,
        tokenizer,
        [item.context for item in items],
        [[" " + opt for opt in item.options] for item in items],
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
    )
    predictions = []
    per_cat: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for item, lls in zip(items, lls_all, strict=True):
        norm = [ll / len(opt) for ll, opt in zip(lls, item.options, strict=True)]
        pred, pred_norm = _argmax(lls), _argmax(norm)
        correct, correct_norm = pred == item.answer, pred_norm == item.answer
        per_cat[item.category].append((correct, correct_norm))
        predictions.append(
            {
                "id": item.id,
                "category": item.category,
                "question": item.question,
                "options": list(item.options),
                "answer": item.answer,
                "pred": pred,
                "pred_norm": pred_norm,
                "correct": correct,
                "correct_norm": correct_norm,
                "loglikelihoods": lls,
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
