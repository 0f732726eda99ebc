"""Perplexity of a causal LM on a list of texts (token-weighted)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medprune.errors import DataError


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per token, nats
    tokens: int
    texts: int


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 512,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """exp(total NLL / total predicted tokens) over ``texts``, each truncated to
    ``max_length`` tokens (a BOS token is prepended when the tokenizer has one)."""
    if not texts:
        raise DataError("no texts to compute perplexity on")
    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encoded = [(bos + tokenizer(t, add_special_tokens=False)["input_ids"])[:max_length] for t in texts]
    encoded = [e for e in encoded if len(e) >= 2]
    if not encoded:
        raise DataError("every text is shorter than two tokens")
    total_nll, total_tokens = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(e) for e in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for row, e in enumerate(batch):
            ids[row, : len(e)] = torch.tensor(e)
            attn[row, : len(e)] = 1
        ids, attn = ids.to(device), attn.to(device)
        logits = model(input_ids=ids, attention_mask=attn).logits.float()
        targets = ids[:, 1:].masked_fill(attn[:, 1:] == 0, -100)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
        total_nll += float(nll)
        total_tokens += int((targets != -100).sum())
        if progress:
            progress(min(start + batch_size, len(encoded)), len(encoded))
    mean = total_nll / total_tokens
    return PerplexityResult(perplexity=math.exp(mean), nll=mean, tokens=total_tokens, texts=len(encoded))
