"""Perplexity of a causal LM on clinical texts, with a sliding window.

Each text is scored on its own (a BOS token first when the tokenizer has one). A text
longer than the window is covered by windows of ``max_length`` tokens that start
``stride`` tokens apart; each window scores only the tokens the previous one did not, so
every token is scored exactly once, with up to ``max_length - stride`` tokens of context
(the Hugging Face "perplexity of fixed-length models" recipe). ``stride == max_length``
gives windows that overlap by one token, the least that scores every token.

Besides perplexity (per token, which depends on the tokenizer) we report bits per byte of
UTF-8 text, which does not, so models with different tokenizers compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from medprune.errors import DataError


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token, nats
    tokens: int  # tokens scored
    texts: int
    bytes: int = 0  # UTF-8 bytes of the texts
    bits_per_byte: float = 0.0
    max_length: int = 0
    stride: int = 0


def sliding_windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, n_scored)`` windows over ``n_tokens`` tokens: the window is
    ``tokens[begin:end]`` and its last ``n_scored`` targets are scored. Position 0 is never
    a target (nothing predicts it), so the windows score tokens 1..n_tokens-1 exactly once."""
    if not 0 < stride <= max_length:
        raise ValueError(f"stride must be in 1..max_length ({max_length}), got {stride}")
    windows = []
    prev_end = 1  # tokens before this index are context only / already scored
    begin = 0
    while True:
        end = min(begin + max_length, n_tokens)
        if end > prev_end:
            windows.append((begin, end, end - prev_end))
            prev_end = end
        if end >= n_tokens:
            return windows
        # the next window starts at least one token before the first one it scores, so that
        # token has something to predict it from (stride = max_length: overlap of one)
        begin = min(begin + stride, prev_end - 1)


@torch.inference_mode()
def perplexity(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 512,
    stride: int | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Token-weighted perplexity over ``texts`` with sliding windows of ``max_length``
    tokens, ``stride`` apart (default: half a window)."""
    if not texts:
        raise DataError("no texts to compute perplexity on")
    stride = stride or max(1, max_length // 2)
    if stride > max_length:
        raise DataError(f"perplexity stride {stride} is larger than the window {max_length}")
    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    windows: list[tuple[list[int], int]] = []
    n_bytes = 0
    n_texts = 0
    for text in texts:
        ids = bos + list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) < 2:
            continue
        n_texts += 1
        n_bytes += len(text.encode("utf-8"))
        for begin, end, n_scored in sliding_windows(len(ids), max_length, stride):
            windows.append((ids[begin:end], n_scored))
    if not windows:
        raise DataError("every text is shorter than two tokens")
    windows.sort(key=lambda w: -len(w[0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        width = max(len(w) for w, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        scored = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, (w, n_scored) in enumerate(batch):
            ids[row, : len(w)] = torch.tensor(w)
            attn[row, : len(w)] = 1
            scored[row, len(w) - n_scored : len(w)] = True  # target positions
        ids, attn, scored = ids.to(device), attn.to(device), scored.to(device)
        hidden_logits = model(input_ids=ids, attention_mask=attn).logits
        # the logit at position p predicts token p + 1; project only the scored positions
        sel = scored[:, 1:]
        logits = hidden_logits[:, :-1][sel].float()
        targets = ids[:, 1:][sel]
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        total_nll += float(nll)
        total_tokens += int(sel.sum())
        if progress:
            progress(min(start + batch_size, len(windows)), len(windows))
    mean = total_nll / total_tokens
    return PerplexityResult(
        perplexity=math.exp(mean),
        nll=mean,
        tokens=total_tokens,
        texts=n_texts,
        bytes=n_bytes,
        bits_per_byte=total_nll / math.log(2) / n_bytes,
        max_length=max_length,
        stride=stride,
    )
