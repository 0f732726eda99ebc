"""Recovery fine-tuning that keeps the pruning: pruned weights stay exactly zero."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from medprune.config import RecoverConfig
from medprune.errors import DataError
from medprune.recover.masks import capture_masks, mask_gradients, reapply_masks, verify_masks


def pack_texts(tokenizer, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """Concatenate tokenized texts (separated by EOS) and cut into ``seq_len`` blocks."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for t in texts:
        stream.extend(tokenizer(t, add_special_tokens=False)["input_ids"] + eos)
    n_blocks = len(stream) // seq_len
    if n_blocks == 0:
        raise DataError(f"recovery data has {len(stream)} tokens, fewer than one block of recover.seq_len={seq_len}")
    return torch.tensor(stream[: n_blocks * seq_len]).reshape(n_blocks, seq_len)


def recover_model(
    model,
    tokenizer,
    texts: Sequence[str],
    cfg: RecoverConfig,
    *,
    exclude: Sequence[str] = ("lm_head", "embed_tokens"),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fine-tune ``model`` in place on ``texts`` with the masks of its pruned layers held.

    Returns a report with the loss curve and the verified sparsity.
    """
    torch.manual_seed(seed)
    blocks = pack_texts(tokenizer, texts, cfg.seq_len)
    masks = capture_masks(model, exclude)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(cfg.steps, 1)))
    )
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(blocks), generator=gen)
    losses = []
    model.train()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        positions = (torch.arange(cfg.batch_size) + step * cfg.batch_size) % len(order)
        batch = blocks[order[positions]].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        mask_gradients(model, masks)
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        reapply_masks(model, masks)
        losses.append(float(loss))
        if progress:
            progress(f"recover step {step + 1}/{cfg.steps} loss {losses[-1]:.4f}")
    model.eval()
    verify_masks(model, masks)
    return {
        "steps": cfg.steps,
        "losses": losses,
        "masked_layers": len(masks),
        "train_blocks": len(blocks),
        "seconds": time.perf_counter() - t0,
    }
