"""JSONL reading with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medprune.errors import DataError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; line numbers start at 1."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a whole JSONL file; an empty file is an error."""
    rows = list(iter_jsonl(path))
    if not rows:
        raise DataError(f"{path}: file is empty (no JSON records)")
    return rows


def require_field(path: str | Path, lineno: int, record: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``record[field]`` or raise a DataError naming file, line and field."""
    if field not in record:
        raise DataError(f"{path}:{lineno}: missing field '{field}'")
    value = record[field]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"{path}:{lineno}: field '{field}' must be {names}, got {type(value).__name__}")
    return value


def read_texts(path: str | Path, field: str = "text") -> list[str]:
    """Read the ``text`` field of every record of a JSONL file."""
    texts = []
    for lineno, record in read_jsonl(path):
        value = require_field(path, lineno, record, field, str)
        if not value.strip():
            raise DataError(f"{path}:{lineno}: field '{field}' is empty")
        texts.append(value)
    return texts


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write records atomically (temp file then rename)."""
    from medprune.io.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
