"""Read visit-note summarization data: a doctor-patient dialogue and the note written for it.

Two formats, detected from the file unless given::

    items = load_visit_notes("aci-bench/valid_full.json")       # ACI-BENCH as released
    items = load_visit_notes("notes.jsonl", fmt="jsonl")        # {id, input, reference}

* ``aci``: ACI-BENCH's release files (Yim et al. 2023, CC BY 4.0),
  ``{"data": [{"src": dialogue, "tgt": note, "file": id}, ..]}``; the dialogue's turns are
  tagged ``[doctor]`` / ``[patient]``. The id is ``file``; the category is the subset the
  id names (``D2N068-virtassist`` -> ``virtassist``).
* ``jsonl``: one ``{id?, input, reference, category?}`` object a line (``input`` is the
  dialogue, ``reference`` the note).

Every error names the file, the record (index, id, and line where the file has lines) and
the field, and is raised before any model work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medprune.errors import DataError
from medprune.io.jsonl import read_jsonl

NoteFormat = Literal["auto", "aci", "jsonl"]
NOTE_FORMATS = ("aci", "jsonl")


@dataclass(frozen=True)
class VisitNoteItem:
    """One dialogue with its reference note."""

    id: str
    dialogue: str
    reference: str
    category: str = "all"


def _check_text(where: str, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field '{field}' is empty")
    return value


def _aci_category(file_id: str) -> str:
    # ACI-BENCH ids end in the subset the dialogue comes from: aci, virtassist, virtscribe
    tail = file_id.rsplit("-", 1)[-1].strip()
    return tail if "-" in file_id and tail else "all"


def _record_lines(text: str, n: int) -> list[int]:
    """Line where each element of the ``data`` list starts, for messages (best effort: the
    line of the n-th ``"src"`` / ``{`` after ``"data"``)."""
    start = text.find('"data"')
    lines: list[int] = []
    pos = text.find("[", start) + 1 if start >= 0 else 0
    depth = 0
    in_str = esc = False
    line = text.count("\n", 0, pos) + 1
    for i in range(pos, len(text)):
        ch = text[i]
        if ch == "\n":
            line += 1
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            if depth == 0 and ch == "{":
                lines.append(line)
                if len(lines) == n:
                    break
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth < 0:
                break
    return lines + [0] * (n - len(lines))


def read_aci(path: str | Path, max_items: int | None = None) -> list[VisitNoteItem]:
    """ACI-BENCH ``{"data": [{"src", "tgt", "file"}]}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise DataError(
            f"{path}: missing field 'data' (ACI-BENCH files are {{\"data\": [{{src, tgt, file}}, ..]}})"
        )
    records = doc["data"]
    if not isinstance(records, list):
        raise DataError(
            f"{path}: field 'data' must be a list of records, got {type(records).__name__}"
        )
    if not records:
        raise DataError(f"{path}: field 'data' is empty (no dialogues)")
    lines = _record_lines(text, len(records))
    items: list[VisitNoteItem] = []
    seen: dict[str, int] = {}
    for k, rec in enumerate(records):
        where = f"{path}:{lines[k]}: record {k}" if lines[k] else f"{path}: record {k}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        file_id = rec.get("file", f"{path.stem}-{k}")
        if (
            isinstance(file_id, bool)
            or not isinstance(file_id, (str, int))
            or not str(file_id).strip()
        ):
            raise DataError(f"{where}: field 'file' must be a non-empty string, got {file_id!r}")
        file_id = str(file_id).strip()
        where = f"{where} (file {file_id!r})"
        for field in ("src", "tgt"):
            if field not in rec:
                raise DataError(f"{where}: missing field '{field}'")
        dialogue = _check_text(where, "src", rec["src"])
        reference = _check_text(where, "tgt", rec["tgt"])
        if file_id in seen:
            raise DataError(
                f"{where}: field 'file' duplicate id {file_id!r} (first in record {seen[file_id]})"
            )
        seen[file_id] = k
        items.append(VisitNoteItem(file_id, dialogue, reference, _aci_category(file_id)))
        if max_items is not None and len(items) >= max_items:
            break
    return items


def read_note_jsonl(path: str | Path, max_items: int | None = None) -> list[VisitNoteItem]:
    """JSONL ``{id?, input, reference, category?}``."""
    path = Path(path)
    items: list[VisitNoteItem] = []
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        for field in ("input", "reference"):
            if field not in rec:
                raise DataError(f"{where}: missing field '{field}'")
        dialogue = _check_text(where, "input", rec["input"])
        reference = _check_text(where, "reference", rec["reference"])
        item_id = rec.get("id", f"{path.stem}-{lineno}")
        if (
            isinstance(item_id, bool)
            or not isinstance(item_id, (str, int))
            or not str(item_id).strip()
        ):
            raise DataError(
                f"{where}: field 'id' must be a non-empty string or integer, got {item_id!r}"
            )
        item_id = str(item_id).strip()
        if item_id in seen:
            raise DataError(
                f"{where}: field 'id' duplicate id {item_id!r} (first on line {seen[item_id]})"
            )
        seen[item_id] = lineno
        category = rec.get("category", "all")
        if not isinstance(category, str) or not category.strip():
            raise DataError(
                f"{where}: field 'category' must be a non-empty string, got {category!r}"
            )
        items.append(VisitNoteItem(item_id, dialogue, reference, category.strip()))
        if max_items is not None and len(items) >= max_items:
            break
    return items


def detect_note_format(path: str | Path) -> str:
    """``aci`` when the file is one JSON object with ``data``, else ``jsonl``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    with path.open("r", encoding="utf-8") as fh:
        head = fh.read(4096)
    stripped = head.lstrip()
    if stripped.startswith("{") and stripped[1:].lstrip().startswith('"data"'):
        return "aci"
    return "jsonl"


def load_visit_notes(
    path: str | Path, max_items: int | None = None, *, fmt: NoteFormat = "auto"
) -> list[VisitNoteItem]:
    """Read dialogue/note pairs in one of :data:`NOTE_FORMATS` (``auto`` detects it)."""
    if fmt not in ("auto", *NOTE_FORMATS):
        raise DataError(
            f"{path}: unknown visit-note format {fmt!r}; use auto or one of {list(NOTE_FORMATS)}"
        )
    if fmt == "auto":
        fmt = detect_note_format(path)  # type: ignore[assignment]
    return read_aci(path, max_items) if fmt == "aci" else read_note_jsonl(path, max_items)
