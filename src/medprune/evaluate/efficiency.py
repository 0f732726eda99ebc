"""Size and speed of a model: parameters, non-zeros, bytes on disk, forward latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from medprune.load.model import model_size_on_disk


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return {"total_params": total, "nonzero_params": nonzero}


@torch.no_grad()
def forward_latency(model, *, batch_size: int = 1, seq_len: int = 128, warmup: int = 1, repeats: int = 5) -> dict[str, float]:
    """Wall-clock latency of one forward pass on random token ids (p50/p95 ms, tokens/s)."""
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=gen).to(device)
    for _ in range(warmup):
        model(input_ids=ids)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(input_ids=ids)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return {
        "latency_ms_p50": p50 * 1000,
        "latency_ms_p95": p95 * 1000,
        "tokens_per_s": batch_size * seq_len / p50,
    }


def efficiency_report(model, model_dir: str | Path | None, *, batch_size: int = 1, seq_len: int = 128) -> dict:
    report = parameter_counts(model)
    if model_dir is not None:
        report["size_bytes"] = model_size_on_disk(model_dir)
    report.update(forward_latency(model, batch_size=batch_size, seq_len=seq_len))
    return report
