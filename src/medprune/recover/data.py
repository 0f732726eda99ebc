"""Recovery training data: plain clinical text (packed) or instructions (loss on the response).

Both forms become :class:`TrainExamples`: fixed-length ``input_ids`` with ``labels`` that are
``-100`` where no loss is taken (prompt tokens, padding)::

    records = read_records("recovery.jsonl")          # [(line, record), ...]
    examples = build_examples(tokenizer, "recovery.jsonl", records, seq_len=256)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medprune.errors import DataError
from medprune.io.fuse import localize
from medprune.io.jsonl import read_jsonl

IGNORE_INDEX = -100


@dataclass
class TrainExamples:
    """Fixed-length training sequences: ``input_ids``, ``labels`` and ``attention_mask``,
    each ``[n, seq_len]``. A mix of several sources (:func:`mix_examples`) also has
    ``origin`` (``[n]``, an index into ``origins``, the source names)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    source: str
    fmt: str
    origin: torch.Tensor | None = None
    origins: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def subset(self, index: torch.Tensor) -> TrainExamples:
        return TrainExamples(
            self.input_ids[index],
            self.labels[index],
            self.attention_mask[index],
            self.source,
            self.fmt,
            None if self.origin is None else self.origin[index],
            self.origins,
        )

    def origin_names(self) -> tuple[str, ...]:
        """The sources the examples come from (one name when they were never mixed)."""
        return self.origins or (self.source,)

    @property
    def loss_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def detect_format(path: str | Path, records: list[tuple[int, dict[str, Any]]], wanted: str) -> str:
    """'text' or 'instruction'; with ``wanted='auto'`` decided by the first record's keys."""
    if wanted != "auto":
        return wanted
    lineno, first = records[0]
    if "prompt" in first and "response" in first:
        return "instruction"
    if "text" in first:
        return "text"
    raise DataError(
        f"{path}:{lineno}: cannot tell the data format: expected a 'text' field (plain text) or "
        f"'prompt' and 'response' fields (instructions), got keys {sorted(first)}"
    )


def _string_field(path: str | Path, lineno: int, record: dict[str, Any], field: str) -> str:
    if field not in record:
        raise DataError(f"{path}:{lineno}: missing field '{field}'")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(
            f"{path}:{lineno}: field '{field}' must be a string, got {type(value).__name__}"
        )
    if not value.strip():
        raise DataError(f"{path}:{lineno}: field '{field}' is empty")
    return value


def pack_text(tokenizer, path: str | Path, records, seq_len: int) -> TrainExamples:
    """Concatenate the texts (EOS between them) and cut the stream into ``seq_len`` blocks."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for lineno, record in records:
        text = _string_field(path, lineno, record, "text")
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + eos)
    n_blocks = len(stream) // seq_len
    if n_blocks == 0:
        raise DataError(
            f"{path}: {len(stream)} tokens in all, fewer than one block of recover.seq_len={seq_len}"
        )
    ids = torch.tensor(stream[: n_blocks * seq_len], dtype=torch.long).reshape(n_blocks, seq_len)
    return TrainExamples(ids, ids.clone(), torch.ones_like(ids), str(path), "text")


def encode_instructions(tokenizer, path: str | Path, records, seq_len: int) -> TrainExamples:
    """One sequence per record: prompt then response (then EOS), right-padded; the loss is
    taken on the response tokens only. Too-long records are cut at ``seq_len``; a record whose
    prompt leaves no room for the response is an error naming its line."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    ids_rows, label_rows, mask_rows = [], [], []
    for lineno, record in records:
        prompt = _string_field(path, lineno, record, "prompt")
        response = _string_field(path, lineno, record, "response")
        p_ids = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + eos
        if len(p_ids) >= seq_len:
            raise DataError(
                f"{path}:{lineno}: prompt is {len(p_ids)} tokens, no room for the response within "
                f"recover.seq_len={seq_len}"
            )
        ids = (p_ids + r_ids)[:seq_len]
        labels = ([IGNORE_INDEX] * len(p_ids) + r_ids)[:seq_len]
        n_pad = seq_len - len(ids)
        ids_rows.append(ids + [pad] * n_pad)
        label_rows.append(labels + [IGNORE_INDEX] * n_pad)
        mask_rows.append([1] * len(ids) + [0] * n_pad)
    return TrainExamples(
        torch.tensor(ids_rows, dtype=torch.long),
        torch.tensor(label_rows, dtype=torch.long),
        torch.tensor(mask_rows, dtype=torch.long),
        str(path),
        "instruction",
    )


def load_examples(tokenizer, uri: str, seq_len: int, data_format: str = "auto") -> TrainExamples:
    """Read a JSONL of text or instructions (local or gs://) into training examples.
    Empty or malformed files raise :class:`DataError` naming the file and line."""
    path = localize(uri)
    records = read_jsonl(path)
    fmt = detect_format(uri, records, data_format)
    if fmt == "text":
        return pack_text(tokenizer, uri, records, seq_len)
    return encode_instructions(tokenizer, uri, records, seq_len)


def split_eval(
    examples: TrainExamples, fraction: float, seed: int
) -> tuple[TrainExamples, TrainExamples]:
    """Hold out ``fraction`` of the examples (at least one, never all) for evaluation,
    chosen by a seeded permutation."""
    n = len(examples)
    n_eval = max(1, round(n * fraction))
    if n_eval >= n:
        raise DataError(
            f"{examples.source}: {n} training sequence(s) is too few to hold out "
            f"recover.eval_fraction={fraction} for evaluation"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return examples.subset(order[n_eval:].sort().values), examples.subset(
        order[:n_eval].sort().values
    )


def mix_examples(
    parts: dict[str, TrainExamples], shares: dict[str, float], seed: int
) -> TrainExamples:
    """One training set drawing each part with its share of the sequences.

    Training visits a seeded permutation of all sequences, so a part's share of the steps is
    its share of the sequences: the parts are subsampled (never repeated) to the largest
    sizes with the asked proportions. ``shares`` must name every part and sum to 1; a share
    of 0 drops the part. Every part must have the same sequence length.
    """
    if set(parts) != set(shares) or abs(sum(shares.values()) - 1) > 1e-9:
        raise ValueError(f"shares {shares} must name the parts {sorted(parts)} and sum to 1")
    used = {name: ex for name, ex in parts.items() if shares[name] > 0}
    lengths = {ex.input_ids.shape[1] for ex in used.values()}
    if len(lengths) != 1:
        raise DataError(f"cannot mix training sequences of different lengths {sorted(lengths)}")
    # The largest total n with n * share <= available for every part.
    total = min(len(ex) / shares[name] for name, ex in used.items())
    gen = torch.Generator().manual_seed(seed)
    names = tuple(sorted(used))
    pieces, origin = [], []
    for i, name in enumerate(names):
        ex = used[name]
        n = max(1, min(len(ex), round(total * shares[name])))
        keep = torch.randperm(len(ex), generator=gen)[:n].sort().values
        pieces.append(ex.subset(keep))
        origin.append(torch.full((n,), i, dtype=torch.long))
    return TrainExamples(
        torch.cat([p.input_ids for p in pieces]),
        torch.cat([p.labels for p in pieces]),
        torch.cat([p.attention_mask for p in pieces]),
        "+".join(used[n].source for n in names),
        pieces[0].fmt if len({p.fmt for p in pieces}) == 1 else "mixed",
        torch.cat(origin),
        names,
    )


def origin_shares(examples: TrainExamples, n_samples: int, seed: int) -> dict[str, float]:
    """Each source's share of the first ``n_samples`` sequences training visits (the
    sequences :func:`batch_indices` hands out, over all processes and steps)."""
    names = examples.origin_names()
    if n_samples <= 0:
        return {name: 0.0 for name in names}
    if examples.origin is None:
        return {names[0]: 1.0}
    counts = torch.zeros(len(names), dtype=torch.long)
    n = len(examples)
    for epoch in range(n_samples // n + 1):
        take = min(n, n_samples - epoch * n)
        if take <= 0:
            break
        perm = _epoch_permutation(n, seed + epoch)[:take]
        counts += torch.bincount(examples.origin[perm], minlength=len(names))
    return {name: float(c) / n_samples for name, c in zip(names, counts.tolist(), strict=True)}


def batch_indices(n_examples: int, batch_size: int, seed: int, start: int) -> torch.Tensor:
    """Example indices for the micro-batch that begins at global sample ``start``.

    Epoch ``e`` visits a permutation seeded by ``seed + e``, so the order depends only on the
    sample counter: a resumed run sees exactly the data an uninterrupted one would.
    """
    out = []
    for k in range(start, start + batch_size):
        epoch, pos = divmod(k, n_examples)
        perm = _epoch_permutation(n_examples, seed + epoch)
        out.append(int(perm[pos]))
    return torch.tensor(out, dtype=torch.long)


_PERM_CACHE: dict[tuple[int, int], torch.Tensor] = {}


def _epoch_permutation(n: int, seed: int) -> torch.Tensor:
    key = (n, seed)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 8:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return _PERM_CACHE[key]
