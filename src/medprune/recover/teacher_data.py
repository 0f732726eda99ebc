"""Text the dense teacher writes itself, for self-data distillation.

Recovery on the domain text alone teaches the pruned model the domain back and lets the rest
of what the dense model knew go (Jaiswal et al. 2023, LLM-KICK: knowledge goes first, and
in-domain scores hide it). Thangarasa et al. (2024, self-data distillation) let the unpruned
model regenerate the fine-tuning data so that the pruned model trains on its teacher's own
distribution. Here the teacher writes ``recover.teacher_data.sequences`` sequences of
``recover.seq_len`` tokens, continuing two kinds of prompts:

- **rewrites**: the first ``prompt_tokens`` tokens of recover.data sequences, so the
  domain's topics come back in the teacher's own words;
- **openings**: a diverse set of clinical and general openings (and the bare BOS token),
  so what the model knew outside the domain is rehearsed too.

Only token ids are stored, cached by the teacher's fingerprint and the settings; the
teacher's full next-token distribution over them is recomputed during training, where the
teacher is in memory for distillation anyway. (Storing it is not worth it: SmolLM2's 49k
vocabulary is 200 KB per position in float32, 12.8 GB for 512 x 128 tokens; top-k logits
would be smaller but lossy, and the teacher forward costs about a third of a training step.)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from medprune.config.recover import TeacherDataConfig
from medprune.errors import DataError
from medprune.io.jsonl import iter_jsonl, require_field
from medprune.progress import Progress
from medprune.recover.data import IGNORE_INDEX, TrainExamples

#: Bump when the same settings would generate other sequences.
GENERATOR_VERSION = 2
REWRITE, OPENING, BOS = "rewrite", "opening", "bos"
KINDS = (REWRITE, OPENING, BOS)

#: Openings for free continuations: clinical documentation, clinical and biomedical
#: knowledge, and general knowledge and language (a pruned model loses all three).
DEFAULT_OPENINGS: tuple[str, ...] = (
    "The patient is a 64-year-old man who presents with",
    "Chief complaint: shortness of breath.",
    "Assessment and plan:",
    "On physical examination, the abdomen was",
    "Discharge summary. The patient was admitted for",
    "The differential diagnosis of chest pain includes",
    "Metformin is a first-line treatment for",
    "Common side effects of ACE inhibitors are",
    "Type 1 diabetes is caused by",
    "The kidneys regulate",
    "Sepsis is defined as",
    "The most common cause of community-acquired pneumonia is",
    "Symptoms of hypothyroidism include",
    "An electrocardiogram showed",
    "Anemia is a condition in which",
    "The liver is responsible for",
    "Antibiotics should not be used to treat",
    "A randomized controlled trial compared",
    "In this retrospective cohort study, we",
    "Background: Hypertension affects",
    "The blood-brain barrier",
    "Vaccines work by",
    "Asthma is a chronic disease of the airways that",
    "The nurse checked the patient's vital signs:",
    "The capital of France is",
    "Water boils at",
    "Photosynthesis is the process by which",
    "The French Revolution began in",
    "In mathematics, a prime number is",
    "The largest planet in the solar system is",
    "Shakespeare wrote",
    "The theory of evolution by natural selection",
    "Once upon a time, in a small village,",
    "Here is a short summary of the meeting:",
    "The main causes of the First World War were",
    "To make a cup of tea, first",
    "The human heart has four chambers:",
    "Electricity is",
    "The Pacific Ocean is",
    "A computer program is a set of",
    "Dear Sir or Madam, I am writing to",
    "The recipe calls for two cups of flour and",
    "Climate change is caused by",
    "The stock market fell sharply after",
    "DNA is a molecule that",
    "Question: What is the function of red blood cells?\nAnswer:",
    "Question: Which organ produces insulin?\nAnswer:",
    "Question: What is the boiling point of water at sea level?\nAnswer:",
)


@dataclass(frozen=True)
class TeacherPrompt:
    """A prompt for the teacher: its token ids and what kind of prompt it is."""

    ids: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class TeacherCorpus:
    """What the teacher wrote: the training sequences, their kinds and where they are cached."""

    examples: TrainExamples
    kinds: dict[str, int]
    key: str
    path: Path
    generated: bool
    seconds: float

    def summary(self) -> dict:
        return {
            "key": self.key,
            "path": str(self.path),
            "sequences": len(self.examples),
            "kinds": dict(self.kinds),
            "generated": self.generated,
            "seconds": self.seconds,
        }


def read_openings(path: str | Path) -> list[str]:
    """Openings from a JSONL of ``{"text"}``; an empty file is an error naming it."""
    path = Path(path)
    out = []
    for lineno, rec in iter_jsonl(path):
        text = require_field(path, lineno, rec, "text", str)
        if not text.strip():
            raise DataError(f"{path}:{lineno}: field 'text' is empty")
        out.append(text)
    if not out:
        raise DataError(f"{path}: no openings (recover.teacher_data.openings)")
    return out


def teacher_prompts(
    tokenizer,
    td: TeacherDataConfig,
    domain: TrainExamples | None,
    openings: Sequence[str],
    seed: int,
) -> list[TeacherPrompt]:
    """``td.sequences`` prompts: ``round(sequences * rewrite_share)`` prefixes of domain
    sequences (drawn without replacement while they last), the rest openings in a shuffled
    cycle, with the BOS token alone as one more opening when the tokenizer has one."""
    rng = random.Random(seed)
    n_rewrite = round(td.sequences * td.rewrite_share) if domain is not None else 0
    prompts: list[TeacherPrompt] = []
    if n_rewrite:
        assert domain is not None
        order: list[int] = []
        while len(order) < n_rewrite:
            block = list(range(len(domain)))
            rng.shuffle(block)
            order.extend(block)
        for i in order[:n_rewrite]:
            row = domain.input_ids[i][domain.attention_mask[i].bool()]
            ids = tuple(int(t) for t in row[: td.prompt_tokens])
            if ids:
                prompts.append(TeacherPrompt(ids, REWRITE))
    pool = [TeacherPrompt(tuple(tokenizer(text)["input_ids"]), OPENING) for text in openings]
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        pool.append(TeacherPrompt((int(bos),), BOS))
    pool = [p for p in pool if p.ids]
    if not pool:
        raise DataError("recover.teacher_data: no opening tokenizes to any token")
    cycle: list[TeacherPrompt] = []
    while len(prompts) < td.sequences:
        if not cycle:
            cycle = list(pool)
            rng.shuffle(cycle)
        prompts.append(cycle.pop())
    return prompts


@torch.no_grad()
def generate_sequences(
    teacher,
    prompts: Sequence[TeacherPrompt],
    seq_len: int,
    *,
    temperature: float,
    top_p: float,
    batch_size: int,
    pad_id: int,
    eos_id: int | None,
    seed: int,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a continuation of every prompt up to ``seq_len`` tokens in all (prompts
    longer than ``seq_len - 1`` are cut to it, so each gets at least one new token);
    ``(input_ids, attention_mask)``, each ``[n, seq_len]``, right-padded after an early EOS.
    Prompts are batched in order of length, left-padded to the batch's longest (the
    attention mask keeps padding out of the teacher's view and positions), so every batch
    but the last is full; batch ``b`` samples with the seed ``seed + b`` (the same prompts
    and seed give the same text on the same machine)."""
    n = len(prompts)
    ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((n, seq_len), dtype=torch.long)
    cut = [p.ids[: seq_len - 1] for p in prompts]
    order = sorted(range(n), key=lambda i: (len(cut[i]), i))
    batches = [order[k : k + batch_size] for k in range(0, n, batch_size)]
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    for b, rows in enumerate(batches):
        width = max(len(cut[i]) for i in rows)
        shortest = min(len(cut[i]) for i in rows)
        prompt = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            prompt[r, width - len(cut[i]) :] = torch.tensor(cut[i], dtype=torch.long)
            attn[r, width - len(cut[i]) :] = 1
        torch.manual_seed(seed + b)
        out = teacher.generate(
            input_ids=prompt.to(device),
            attention_mask=attn.to(device),
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            max_new_tokens=seq_len - shortest,
            min_new_tokens=1,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        ).cpu()
        for r, i in enumerate(rows):
            length = len(cut[i])
            row = out[r, width - length :][:seq_len]
            end = row.shape[0]
            if eos_id is not None:
                hits = (row[length:] == eos_id).nonzero()
                if hits.numel():
                    end = length + int(hits[0]) + 1  # keep the EOS, drop what follows
            ids[i, :end] = row[:end]
            mask[i, :end] = 1
        if progress is not None:
            progress(f"teacher text: batch {b + 1}/{len(batches)} ({len(rows)} x {seq_len} tokens)")
    teacher.train(was_training)
    return ids, mask


def corpus_key(teacher_fingerprint: str, settings: dict) -> str:
    """The cache key: the teacher's weights and every setting that changes the text."""
    blob = json.dumps(
        {"teacher": teacher_fingerprint, "version": GENERATOR_VERSION, **settings}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _settings(
    td: TeacherDataConfig, seq_len: int, seed: int, openings: Sequence[str], domain_sha: str | None
) -> dict:
    return {
        "sequences": td.sequences,
        "seq_len": seq_len,
        "temperature": td.temperature,
        "top_p": td.top_p,
        "rewrite_share": td.rewrite_share,
        "prompt_tokens": td.prompt_tokens,
        "openings_sha256": hashlib.sha256("\n".join(openings).encode()).hexdigest(),
        "domain_sha256": domain_sha if td.rewrite_share > 0 else None,
        "seed": seed,
    }


def _examples(ids: torch.Tensor, mask: torch.Tensor, key: str) -> TrainExamples:
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    return TrainExamples(ids, labels, mask, f"teacher-text:{key}", "text")


def _save(
    path: Path, ids: torch.Tensor, mask: torch.Tensor, kinds: torch.Tensor, meta: dict
) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save_file(
        {"input_ids": ids, "attention_mask": mask, "kind": kinds},
        str(tmp),
        metadata={"medprune": json.dumps(meta, sort_keys=True)},
    )
    os.replace(tmp, path)  # a file rename: atomic locally and on Cloud Storage FUSE


def _load(path: Path, meta: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            stored = json.loads((fh.metadata() or {}).get("medprune", "null"))
            if stored != meta:
                return None
            return (
                fh.get_tensor("input_ids"),
                fh.get_tensor("attention_mask"),
                fh.get_tensor("kind"),
            )
    except (OSError, ValueError, SafetensorError):
        return None  # damaged or foreign: written again


def teacher_corpus(
    teacher,
    tokenizer,
    td: TeacherDataConfig,
    *,
    seq_len: int,
    domain: TrainExamples | None,
    domain_sha256: str | None,
    teacher_fingerprint: str,
    cache_dir: str | Path,
    seed: int,
    progress: Progress = print,
) -> TeacherCorpus:
    """The teacher's sequences for these settings: read from ``cache_dir`` when a file with
    the same key and settings is there, else generated and cached."""
    openings = read_openings(td.openings) if td.openings else list(DEFAULT_OPENINGS)
    settings = _settings(td, seq_len, seed, openings, domain_sha256)
    key = corpus_key(teacher_fingerprint, settings)
    path = Path(cache_dir) / f"teacher-text-{key}.safetensors"
    meta = {"teacher": teacher_fingerprint, "version": GENERATOR_VERSION, **settings}
    cached = _load(path, meta) if path.is_file() else None
    t0 = time.perf_counter()
    if cached is not None:
        ids, mask, kind = cached
        progress(f"teacher text: {ids.shape[0]} sequences from the cache {path}")
        generated = False
    else:
        prompts = teacher_prompts(tokenizer, td, domain, openings, seed)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        if pad is None:
            raise DataError(
                "recover.teacher_data: the tokenizer has neither a pad nor an EOS token"
            )
        progress(
            f"teacher text: writing {len(prompts)} sequences of {seq_len} tokens "
            f"(T={td.temperature}, top-p {td.top_p}) into {path}"
        )
        ids, mask = generate_sequences(
            teacher,
            prompts,
            seq_len,
            temperature=td.temperature,
            top_p=td.top_p,
            batch_size=td.batch_size,
            pad_id=int(pad),
            eos_id=tokenizer.eos_token_id,
            seed=seed,
            progress=progress,
        )
        kind = torch.tensor([KINDS.index(p.kind) for p in prompts], dtype=torch.long)
        _save(path, ids, mask, kind, meta)
        generated = True
    counts = torch.bincount(kind, minlength=len(KINDS)).tolist()
    return TeacherCorpus(
        examples=_examples(ids, mask, key),
        kinds={k: int(c) for k, c in zip(KINDS, counts, strict=True) if c},
        key=key,
        path=path,
        generated=generated,
        seconds=time.perf_counter() - t0,
    )
