"""Leakage between evaluation items and training texts: shared word runs and answer phrases."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medprune.errors import DataError
from medprune.io.jsonl import iter_jsonl, require_field

# Leakage rules: a text leaks an item if they share a run of this many words...
LEAK_SHINGLE_WORDS = 8
# ...or if the text contains the item's correct option as a phrase of at least this many
# words (one- and two-word terms such as "Seizure" are too generic to police).
LEAK_MIN_TERM_WORDS = 3

_WORD = re.compile(r"[a-z0-9]+")


def _norm_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_shingles(text: str, n: int = LEAK_SHINGLE_WORDS) -> set[tuple[str, ...]]:
    """The runs of ``n`` words of ``text`` after the leakage rules' normalisation (lower case,
    letters and digits only): what two texts must share to count as overlapping."""
    words = _norm_words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class LeakIndex:
    """Word shingles and answer phrases of MCQ items, for fast lookup in texts."""

    def __init__(self, items: Iterable[dict[str, Any]]) -> None:
        self.shingles: dict[tuple[str, ...], set[str]] = {}
        self.phrases: dict[tuple[str, ...], set[str]] = {}
        n = LEAK_SHINGLE_WORDS
        for item in items:
            item_id = str(item["id"])
            answer = item["options"][item["answer"]]
            for text in (item["question"], answer):
                words = _norm_words(text)
                for i in range(len(words) - n + 1):
                    self.shingles.setdefault(tuple(words[i : i + n]), set()).add(item_id)
            words = _norm_words(answer)
            if LEAK_MIN_TERM_WORDS <= len(words) < n:
                self.phrases.setdefault(tuple(words), set()).add(item_id)
        self.phrase_lengths = sorted({len(p) for p in self.phrases})

    def leaked_items(self, text: str) -> set[str]:
        words = _norm_words(text)
        hits: set[str] = set()
        n = LEAK_SHINGLE_WORDS
        for i in range(len(words) - n + 1):
            hits |= self.shingles.get(tuple(words[i : i + n]), set())
        for k in self.phrase_lengths:
            for i in range(len(words) - k + 1):
                hits |= self.phrases.get(tuple(words[i : i + k]), set())
        return hits


def _read_mcq_for_leakage(path: Path) -> list[dict[str, Any]]:
    items = []
    for lineno, rec in iter_jsonl(path):
        item_id = require_field(path, lineno, rec, "id", (str, int))
        question = require_field(path, lineno, rec, "question", str)
        options = require_field(path, lineno, rec, "options", list)
        answer = require_field(path, lineno, rec, "answer", int)
        if not 0 <= answer < len(options) or not isinstance(options[answer], str):
            raise DataError(
                f"{path}:{lineno}: field 'answer' must index a string in 'options' "
                f"(0..{len(options) - 1}), got {answer}"
            )
        items.append(
            {"id": str(item_id), "question": question, "options": options, "answer": answer}
        )
    return items


def check_leakage(
    mcq_paths: Sequence[str | Path] | str | Path, text_paths: Sequence[str | Path] | str | Path
) -> list[str]:
    """Ids of MCQ items whose content appears in any text file (empty list = clean).

    After lower-casing and keeping only letters and digits, an item leaks into a text if
    they share a run of 8 words from the item's question or correct option, or if the
    text contains the correct option as a phrase of 3 or more words.
    """
    mcq_list = [mcq_paths] if isinstance(mcq_paths, (str, Path)) else list(mcq_paths)
    text_list = [text_paths] if isinstance(text_paths, (str, Path)) else list(text_paths)
    items = [it for p in mcq_list for it in _read_mcq_for_leakage(Path(p))]
    index = LeakIndex(items)
    leaked: set[str] = set()
    for p in text_list:
        path = Path(p)
        for lineno, rec in iter_jsonl(path):
            leaked |= index.leaked_items(require_field(path, lineno, rec, "text", str))
    return sorted(leaked)
