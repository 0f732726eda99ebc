"""Size and speed of a model: parameters, non-zeros, bytes on disk, forward latency,
throughput and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch

from medprune.load.model import model_size_on_disk


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return {"total_params": total, "nonzero_params": nonzero}


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def forward_latency(
    model, *, batch_size: int = 1, seq_len: int = 128, warmup: int = 1, repeats: int = 5
) -> dict[str, float]:
    """Wall-clock latency of one forward pass on fixed random token ids: p50 and p95 in
    milliseconds and tokens per second at the median."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), generator=gen).to(device)
    for _ in range(warmup):
        model(input_ids=ids)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        model(input_ids=ids)
        _sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    p50 = percentile(times, 50)
    return {
        "latency_ms_p50": p50 * 1000,
        "latency_ms_p95": percentile(times, 95) * 1000,
        "tokens_per_s": batch_size * seq_len / p50,
    }


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory allocated by torch on CUDA; on CPU the process's peak
    resident set size (which includes everything the process loaded)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def efficiency_report(
    model,
    model_dir: str | Path | None,
    *,
    batch_size: int = 1,
    seq_len: int = 128,
    warmup: int = 1,
    repeats: int = 5,
) -> dict:
    """Parameters, non-zero parameters, bytes on disk, latency p50/p95, tokens/s and peak
    memory, all numbers (``flat_metrics`` logs each)."""
    device = next(model.parameters()).device
    report: dict = parameter_counts(model)
    report["sparsity"] = 1.0 - report["nonzero_params"] / max(1, report["total_params"])
    if model_dir is not None:
        report["size_bytes"] = model_size_on_disk(model_dir)
    report.update(
        forward_latency(
            model, batch_size=batch_size, seq_len=seq_len, warmup=warmup, repeats=repeats
        )
    )
    report["latency_batch_size"] = batch_size
    report["latency_seq_len"] = seq_len
    report["peak_memory_bytes"] = peak_memory_bytes(device)
    return report
