"""Read multiple-choice items in the formats of common public medical QA sets.

Each format is one small parser from a JSON record to an :class:`MCQItem`; the format of a
file is detected from its first record unless given. Every error names the file, the line
and the field::

    items = load_mcq("medqa_test.jsonl")            # auto-detected
    items = load_mcq("dev.jsonl", fmt="medmcqa")    # forced

Formats:

* ``medprune`` (ours): ``{question, options: [..], answer, category?, id?}``; ``answer`` is an
  index, a letter or the text of the right option.
* ``medqa``: ``{question, options: {"A": .., "B": ..}, answer_idx?, answer, meta_info?}``;
  ``answer`` is the letter or the right option's text (MedQA-USMLE JSONL uses ``answer_idx``
  for the letter and ``answer`` for the text).
* ``medmcqa``: ``{question, opa, opb, opc, opd, cop, subject_name?, id?}``; ``cop`` is the
  right option as 0-3 (Hugging Face) or 1-4 (original release, set ``cop_base``).
* ``pubmedqa``: the original release ``ori_pqal.json`` (one JSON object keyed by PubMed id,
  each value with ``QUESTION``, ``CONTEXTS`` and ``final_decision``; the PubMed id is the item
  id) or JSONL ``{question, context, final_decision}`` (``answer`` also accepted; ``pubid``
  as id); options are yes / no / maybe. ``context`` may be a string, a list of strings or
  ``{"contexts": [..]}`` as in the Hugging Face copy. The prompt is exactly the one
  lm-evaluation-harness's ``pubmedqa`` task builds (``preprocess_pubmedqa.doc_to_text``):
  ``"Abstract: " + "\n".join(contexts) + "\nQuestion: " + question + "\nAnswer:"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medprune.errors import DataError
from medprune.io.jsonl import read_jsonl, require_field

LETTERS = "ABCDEFGHIJ"
PUBMEDQA_OPTIONS = ("yes", "no", "maybe")


@dataclass(frozen=True)
class MCQItem:
    """One multiple-choice item. ``context`` is the text every option continues: ``prompt``
    when set (the parsers build ``Question: ...\nAnswer:``), else ``question`` itself."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    category: str = "all"
    prompt: str | None = None

    @property
    def context(self) -> str:
        return self.prompt if self.prompt is not None else self.question


class _Where:
    """File, line and (for files keyed by id) record of a record, to prefix error messages."""

    def __init__(self, path: Path, lineno: int, record: str | None = None):
        self.path, self.lineno, self.record = path, lineno, record

    @property
    def prefix(self) -> str:
        where = f"{self.path}:{self.lineno}"
        return f"{where}: record {self.record!r}" if self.record is not None else where

    def error(self, field: str, problem: str) -> DataError:
        return DataError(f"{self.prefix}: field '{field}' {problem}")

    def missing(self, field: str) -> DataError:
        return DataError(f"{self.prefix}: missing field '{field}'")


def _text(where: _Where, rec: dict, field: str) -> str:
    value = require_field(where.path, where.lineno, rec, field, str)
    if not value.strip():
        raise where.error(field, "is empty")
    return value.strip()


def _category(where: _Where, rec: dict, *fields: str, default: str = "all") -> str:
    for field in fields:
        if field in rec and rec[field] is not None:
            value = rec[field]
            if not isinstance(value, str) or not value.strip():
                raise where.error(field, f"must be a non-empty string, got {value!r}")
            return value.strip()
    return default


def _answer_index(where: _Where, field: str, answer: Any, options: Sequence[str]) -> int:
    """An answer given as an index, a letter or the right option's text."""
    if isinstance(answer, bool) or answer is None:
        raise where.error(field, f"must be an option index, letter or option text, got {answer!r}")
    if isinstance(answer, int):
        index = answer
    elif (
        isinstance(answer, str)
        and len(answer.strip()) == 1
        and answer.strip().upper() in LETTERS[: len(options)]
    ):
        index = LETTERS.index(answer.strip().upper())
    elif isinstance(answer, str) and answer.strip() in [o.strip() for o in options]:
        index = [o.strip() for o in options].index(answer.strip())
    else:
        raise where.error(field, f"{answer!r} is not an index, a letter or the text of an option")
    if not 0 <= index < len(options):
        raise where.error(field, f"{answer!r} is out of range for {len(options)} options")
    return index


def _options_list(where: _Where, field: str, options: Any) -> tuple[str, ...]:
    if not isinstance(options, list) or len(options) < 2:
        raise where.error(field, "must be a list of at least 2 options")
    for k, opt in enumerate(options):
        if not isinstance(opt, str) or not opt.strip():
            raise where.error(field, f"option {k} must be a non-empty string, got {opt!r}")
    return tuple(o.strip() for o in options)


def _prompt(question: str) -> str:
    """The context every option continues (lm-evaluation-harness's MedQA/MMLU style); a
    question that already ends in ``Answer:`` is its own prompt."""
    if question.rstrip().endswith("Answer:"):
        return question.rstrip()
    return f"Question: {question}\nAnswer:"


def parse_medprune(where: _Where, rec: dict) -> MCQItem:
    question = _text(where, rec, "question")
    options = _options_list(
        where, "options", require_field(where.path, where.lineno, rec, "options", list)
    )
    if "answer" not in rec:
        raise where.missing("answer")
    answer = _answer_index(where, "answer", rec["answer"], options)
    return MCQItem(
        _id(where, rec),
        question,
        options,
        answer,
        _category(where, rec, "category"),
        _prompt(question),
    )


def parse_medqa(where: _Where, rec: dict) -> MCQItem:
    question = _text(where, rec, "question")
    raw = require_field(where.path, where.lineno, rec, "options", dict)
    keys = sorted(raw)
    if len(keys) < 2 or any(
        not (isinstance(k, str) and len(k) == 1 and k.upper() in LETTERS) for k in keys
    ):
        raise where.error("options", f"must map letters A, B, ... to option texts, got keys {keys}")
    if [k.upper() for k in keys] != list(LETTERS[: len(keys)]):
        raise where.error("options", f"letters must run A, B, ... without gaps, got {keys}")
    options = _options_list(where, "options", [raw[k] for k in keys])
    field = "answer_idx" if "answer_idx" in rec else "answer"
    if field not in rec:
        raise DataError(f"{where.path}:{where.lineno}: missing field 'answer' (or 'answer_idx')")
    answer = _answer_index(where, field, rec[field], options)
    meta = rec.get("meta_info")
    category = _category(
        where,
        rec,
        "category",
        default=meta.strip() if isinstance(meta, str) and meta.strip() else "all",
    )
    return MCQItem(_id(where, rec), question, options, answer, category, _prompt(question))


def parse_medmcqa(where: _Where, rec: dict, cop_base: int = 0) -> MCQItem:
    question = _text(where, rec, "question")
    options = tuple(_text(where, rec, f) for f in ("opa", "opb", "opc", "opd"))
    cop = require_field(where.path, where.lineno, rec, "cop", int)
    if isinstance(cop, bool) or not 0 <= cop - cop_base < 4:
        allowed = "0-3" if cop_base == 0 else "1-4"
        raise where.error("cop", f"must be the right option as {allowed}, got {cop!r}")
    category = _category(where, rec, "category", "subject_name")
    return MCQItem(_id(where, rec), question, options, cop - cop_base, category, _prompt(question))


def pubmedqa_prompt(contexts: Sequence[str], question: str) -> str:
    """The context lm-evaluation-harness's ``pubmedqa`` task scores the answers after: its
    ``doc_to_text`` joins the abstract's sections with newlines, verbatim."""
    return "Abstract: {}\nQuestion: {}\nAnswer:".format("\n".join(contexts), question)


def _pubmedqa_decision(where: _Where, rec: dict, fields: Sequence[str]) -> int:
    field = next((f for f in fields if f in rec), None)
    if field is None:
        raise where.missing(fields[0] if len(fields) == 1 else f"{fields[0]}' (or '{fields[1]}")
    decision = rec[field]
    if not isinstance(decision, str) or decision.strip().lower() not in PUBMEDQA_OPTIONS:
        raise where.error(field, f"must be one of {list(PUBMEDQA_OPTIONS)}, got {decision!r}")
    return PUBMEDQA_OPTIONS.index(decision.strip().lower())


def _contexts(where: _Where, field: str, ctx: Any) -> list[str]:
    if isinstance(ctx, dict):
        ctx = ctx.get("contexts")
    if isinstance(ctx, str):
        ctx = [ctx]
    if (
        not isinstance(ctx, list)
        or not ctx
        or not all(isinstance(c, str) for c in ctx)
        or not "".join(ctx).strip()
    ):
        raise where.error(
            field, "must be a non-empty string, a list of strings or {contexts: [..]}"
        )
    return ctx


def parse_pubmedqa(where: _Where, rec: dict) -> MCQItem:
    """A JSONL record ``{question, context, final_decision}`` (Hugging Face ``pubmed_qa``)."""
    question = require_field(where.path, where.lineno, rec, "question", str)
    if not question.strip():
        raise where.error("question", "is empty")
    if "context" not in rec:
        raise where.missing("context")
    contexts = _contexts(where, "context", rec["context"])
    answer = _pubmedqa_decision(where, rec, ("final_decision", "answer"))
    category = _category(where, rec, "category", default="pubmedqa")
    return MCQItem(
        _id(where, rec),
        question,
        PUBMEDQA_OPTIONS,
        answer,
        category,
        pubmedqa_prompt(contexts, question),
    )


def parse_pubmedqa_release(where: _Where, pubid: str, rec: Any) -> MCQItem:
    """One value of the original ``ori_pqal.json``: ``{QUESTION, CONTEXTS, final_decision, ..}``."""
    if not isinstance(rec, dict):
        raise DataError(f"{where.prefix}: expected a JSON object, got {type(rec).__name__}")
    if "QUESTION" not in rec:
        raise where.missing("QUESTION")
    question = rec["QUESTION"]
    if not isinstance(question, str) or not question.strip():
        raise where.error("QUESTION", f"must be a non-empty string, got {question!r}")
    if "CONTEXTS" not in rec:
        raise where.missing("CONTEXTS")
    contexts = _contexts(where, "CONTEXTS", rec["CONTEXTS"])
    answer = _pubmedqa_decision(where, rec, ("final_decision",))
    return MCQItem(
        pubid, question, PUBMEDQA_OPTIONS, answer, "pubmedqa", pubmedqa_prompt(contexts, question)
    )


def read_pubmedqa_release(path: str | Path) -> list[tuple[_Where, str, Any]] | None:
    """The records of an original-release PubMedQA file (one JSON object keyed by PubMed id)
    as ``(where, pubid, record)``, or None when the file is not one (e.g. JSONL)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError:
        return None  # JSONL (several objects) or broken: the JSONL reader names the line
    if not isinstance(data, dict) or "question" in data or "QUESTION" in data:
        return None
    if not data:
        raise DataError(f"{path}: file is empty (no PubMedQA records)")
    if not all(isinstance(v, dict) for v in data.values()):
        return None
    lines = _key_lines(text, list(data))
    return [(_Where(path, lines[k], str(k)), str(k), v) for k, v in data.items()]


def _no_duplicate_keys(path: Path) -> Callable[[list[tuple[str, Any]]], dict]:
    # json.loads keeps the last of two equal keys silently; two items with one PubMed id
    # are an error in the file
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise DataError(f"{path}: record {key!r} appears twice (duplicate PubMed id)")
            out[key] = value
        return out

    return hook


def _key_lines(text: str, keys: Sequence[str]) -> dict[str, int]:
    """Line of each top-level key of a JSON object (keys in file order), for messages."""
    out: dict[str, int] = {}
    pos, line = 0, 1
    for key in keys:
        found = text.find(json.dumps(key), pos)
        if found < 0:
            out[key] = line
            continue
        line += text.count("\n", pos, found)
        pos = found
        out[key] = line
    return out


def _id(where: _Where, rec: dict) -> str:
    value = rec.get("id", rec.get("pubid"))
    if value is None:
        return f"{where.path.stem}-{where.lineno}"
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise where.error("id", f"must be a non-empty string or integer, got {value!r}")
    return str(value).strip()


PARSERS: dict[str, Callable[[_Where, dict], MCQItem]] = {
    "medprune": parse_medprune,
    "medqa": parse_medqa,
    "medmcqa": parse_medmcqa,
    "pubmedqa": parse_pubmedqa,
}
FORMATS = tuple(PARSERS)


def detect_format(record: dict) -> str | None:
    """The format a record looks like, or None."""
    if all(k in record for k in ("opa", "opb", "opc", "opd")):
        return "medmcqa"
    if "final_decision" in record or (
        "context" in record and "question" in record and "options" not in record
    ):
        return "pubmedqa"
    if isinstance(record.get("options"), dict):
        return "medqa"
    if isinstance(record.get("options"), list):
        return "medprune"
    return None


def _check_distinct_options(where: _Where, item: MCQItem) -> None:
    """Two identical options (ignoring case and surrounding space) make an item unscorable:
    whichever the answer is, the model cannot prefer it over its twin."""
    first: dict[str, int] = {}
    for k, option in enumerate(item.options):
        key = " ".join(option.lower().split())
        if key in first:
            raise where.error(
                "options",
                f"options {first[key]} and {k} are the same text {option!r}; every option must differ",
            )
        first[key] = k


def load_mcq(
    path: str | Path,
    max_items: int | None = None,
    *,
    fmt: str = "auto",
    cop_base: int = 0,
) -> list[MCQItem]:
    """Read multiple-choice items from a JSONL file in one of :data:`FORMATS`.

    ``fmt="auto"`` detects the format from the first record; every record must then have
    that format. Item ids must be unique (a missing id becomes ``<file stem>-<line>``).
    """
    path = Path(path)
    if fmt != "auto" and fmt not in PARSERS:
        raise DataError(
            f"{path}: unknown multiple-choice format {fmt!r}; use auto or one of {list(FORMATS)}"
        )
    if fmt in ("auto", "pubmedqa"):
        release = read_pubmedqa_release(path)
        if release is not None:
            return [parse_pubmedqa_release(w, pubid, rec) for w, pubid, rec in release[:max_items]]
    rows = read_jsonl(path)
    if fmt == "auto":
        lineno, first = rows[0]
        fmt = detect_format(first) or ""
        if not fmt:
            raise DataError(
                f"{path}:{lineno}: cannot tell the multiple-choice format from fields {sorted(first)}; "
                "expected options as a list (medprune) or letter map (medqa), opa..opd + cop (medmcqa), "
                "or context + final_decision (pubmedqa)"
            )
    items: list[MCQItem] = []
    seen: dict[str, int] = {}
    for lineno, rec in rows:
        where = _Where(path, lineno)
        item = parse_medmcqa(where, rec, cop_base) if fmt == "medmcqa" else PARSERS[fmt](where, rec)
        _check_distinct_options(where, item)
        if item.id in seen:
            raise where.error("id", f"duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
        if max_items is not None and len(items) >= max_items:
            break
    return items
