"""Run GGUF files in llama.cpp itself (the tools :mod:`medprune.export.llama_cpp` builds):
``llama-perplexity`` for perplexity and, with ``--kl-divergence-base``, every scored position's
log-probabilities (:func:`read_logits_file`); ``llama-bench`` for prompt-processing and
generation tokens/s. :data:`REPACK` says, per weight type, whether llama.cpp's repacked CPU
layouts are used (off for q8_0: its AMX kernel crashes in this llama.cpp). Used by the export tests (llama.cpp vs PyTorch on the same token ids)
and ``benchmarks/serving.py``."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medprune.export.llama_cpp import LlamaCpp

#: weight type -> use llama.cpp's repacked CPU layouts (extra buffer types: AMX, AVX-512
#: interleaving). q8_0: off, llama.cpp (llama-cpp-python 0.3.36, GGML_NATIVE) segfaults in
#: ggml_backend_amx_mul_mat on AMX CPUs; f16 is not repacked either way.
REPACK = {"f32": True, "f16": True, "bf16": True, "q8_0": False}


@dataclass(frozen=True)
class PerplexityRun:
    perplexity: float
    n_ctx: int
    log: str


def run_perplexity(
    lc: LlamaCpp,
    gguf: str | Path,
    text_file: str | Path,
    *,
    n_ctx: int,
    threads: int = 1,
    chunks: int | None = None,
    logits_file: str | Path | None = None,
    repack: bool = True,
    timeout: float = 3600,
) -> PerplexityRun:
    """``llama-perplexity`` over ``text_file`` in chunks of ``n_ctx`` tokens (the second half
    of each chunk is scored, BOS first when the model adds one). The scored positions'
    log-probabilities are written with ``--kl-divergence-base`` (to ``logits_file``, else a
    temporary file) and the perplexity computed from them (:func:`LogitsFile.perplexity`):
    llama.cpp logs through a background thread, and under load its last lines ("Final
    estimate") can be missing from the captured output.
    ``repack=False`` runs without llama.cpp's repacked CPU weight layouts (``--no-repack``).

    Repacking must be off for q8_0 on CPUs with AMX when llama.cpp is built with
    ``GGML_NATIVE``: llama-cpp-python 0.3.36's llama.cpp crashes in
    ``ggml_backend_amx_mul_mat`` (segfault, seen with SmolLM2-135M and the tiny test models)."""
    with tempfile.TemporaryDirectory(prefix="medprune-ppl-") as tmp:
        target = Path(logits_file) if logits_file else Path(tmp) / "logits.bin"
        cmd = [
            str(lc.require_built().tool("llama-perplexity")),
            "-m",
            str(gguf),
            "-f",
            str(text_file),
            "-c",
            str(n_ctx),
            "-b",
            str(n_ctx),
            "-t",
            str(threads),
            "--no-warmup",
            "--kl-divergence-base",
            str(target),
        ]
        if chunks:
            cmd += ["--chunks", str(chunks)]
        if not repack:
            cmd += ["--no-repack"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        log = proc.stdout + proc.stderr
        if proc.returncode != 0 or not target.is_file():
            tail = "\n".join(log.strip().splitlines()[-10:])
            raise RuntimeError(
                f"llama-perplexity failed on {gguf} (exit {proc.returncode}):\n{tail}"
            )
        result = read_logits_file(target)
        if result.tokens.size == 0:
            raise RuntimeError(
                f"llama-perplexity on {gguf}: {text_file} has fewer than 2 x {n_ctx} tokens"
            )
        return PerplexityRun(result.perplexity(), n_ctx, log)


@dataclass(frozen=True)
class LogitsFile:
    """What ``llama-perplexity --kl-divergence-base`` wrote: the evaluated token ids
    (``n_chunk * n_ctx``, as tokenized, before the BOS that replaces each chunk's first token)
    and, for each chunk, the log-probabilities at positions ``n_ctx // 2 .. n_ctx - 2``.
    llama.cpp stores each row as uint16 steps between the row's max logit and 16 below it:
    ``log_probs`` is exact to half a step (``scale / 2``, at most 1.3e-4), and values more
    than 16 below the max are clipped to ``floor`` (the row's lowest stored value)."""

    n_ctx: int
    n_vocab: int
    tokens: np.ndarray  # (n_chunk, n_ctx) int32
    log_probs: np.ndarray  # (n_chunk, rows, n_vocab) float32
    floor: np.ndarray  # (n_chunk, rows) float32
    scale: np.ndarray  # (n_chunk, rows) float32

    @property
    def first(self) -> int:
        return self.n_ctx // 2

    def perplexity(self) -> float:
        """exp of the mean negative log-probability of each scored position's next token, as
        llama-perplexity computes it (a target more than 16 nats below the top counts as the
        row's floor)."""
        rows = self.log_probs.shape[1]
        targets = self.tokens[:, self.first + 1 : self.first + 1 + rows]
        picked = np.take_along_axis(self.log_probs, targets[..., None], axis=-1)[..., 0]
        return float(np.exp(-picked.astype(np.float64).mean()))


def read_logits_file(path: str | Path) -> LogitsFile:
    data = Path(path).read_bytes()
    if data[:8] != b"_logits_":
        raise ValueError(f"{path}: not a llama-perplexity logits file")
    n_ctx, n_vocab, n_chunk = (int(x) for x in np.frombuffer(data, np.int32, 3, 8))
    off = 20
    tokens = np.frombuffer(data, np.int32, n_chunk * n_ctx, off).reshape(n_chunk, n_ctx)
    off += 4 * n_chunk * n_ctx
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rows = n_ctx - 1 - n_ctx // 2
    raw = np.frombuffer(data, np.uint16, n_chunk * rows * nv, off).reshape(n_chunk, rows, nv)
    head = raw[..., :4].copy().view(np.float32)  # (n_chunk, rows, 2): scale, min log-prob
    scale, floor = head[..., 0], head[..., 1]
    log_probs = raw[..., 4 : 4 + n_vocab].astype(np.float32) * scale[..., None] + floor[..., None]
    return LogitsFile(n_ctx, n_vocab, tokens.copy(), log_probs, floor.copy(), scale.copy())


@dataclass(frozen=True)
class BenchRun:
    prompt_tokens: int
    gen_tokens: int
    prompt_tps: float
    gen_tps: float
    prompt_tps_sd: float
    gen_tps_sd: float
    threads: int


def run_bench(
    lc: LlamaCpp,
    gguf: str | Path,
    *,
    prompt_tokens: int = 128,
    gen_tokens: int = 64,
    threads: int = 1,
    repetitions: int = 5,
    repack: bool = True,
    timeout: float = 3600,
) -> BenchRun:
    """``llama-bench``: prompt processing (``-p``) and generation (``-n``) tokens/s, mean and
    standard deviation over ``repetitions``; ``repack=False``: ``--repack 0``."""
    cmd = [
        str(lc.require_built().tool("llama-bench")),
        "-m",
        str(gguf),
        "-p",
        str(prompt_tokens),
        "-n",
        str(gen_tokens),
        "-t",
        str(threads),
        "-r",
        str(repetitions),
        "--repack",
        "1" if repack else "0",
        "-o",
        "json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise RuntimeError(f"llama-bench failed on {gguf} (exit {proc.returncode}):\n{tail}")
    records = json.loads(proc.stdout)
    pp = next(r for r in records if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r for r in records if r["n_gen"] > 0 and r["n_prompt"] == 0)
    return BenchRun(
        prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens,
        prompt_tps=float(pp["avg_ts"]),
        gen_tps=float(tg["avg_ts"]),
        prompt_tps_sd=float(pp["stddev_ts"]),
        gen_tps_sd=float(tg["stddev_ts"]),
        threads=threads,
    )
