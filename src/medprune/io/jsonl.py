"""JSONL reading with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medprune.errors import DataError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; line numbers start at 1.

    Read as UTF-8; a UTF-8 byte-order mark and Windows (CRLF) line ends are accepted. A file
    that is one JSON array, UTF-16 text, or bytes that are not UTF-8 is refused with a
    message naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise DataError(f"{path}: UTF-16 text; save the file as UTF-8 JSON Lines")
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: {_not_jsonl(path, line) or f'invalid JSON ({exc.msg})'}"
                ) from None
            if isinstance(record, list) and record and all(isinstance(r, dict) for r in record):
                raise DataError(f"{path}:{lineno}: {_not_jsonl(path, '[')}")
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            yield lineno, record


def _not_jsonl(path: Path, line: str) -> str | None:
    """What to say when a line shows the file is JSON but not JSON Lines."""
    if line.lstrip().startswith("["):
        return (
            "a JSON array, but medprune reads JSON Lines (one object per line); "
            f"convert it with: jq -c '.[]' {path.name} > {path.stem}.jsonl"
        )
    if line.strip() == "{":
        return f"a JSON object spread over several lines; JSON Lines needs one object per line (jq -c . {path.name})"
    return None


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a whole JSONL file; an empty file is an error."""
    rows = list(iter_jsonl(path))
    if not rows:
        raise DataError(f"{path}: file is empty (no JSON records)")
    return rows


def require_field(
    path: str | Path, lineno: int, record: dict[str, Any], field: str, kind: type | tuple[type, ...]
) -> Any:
    """Return ``record[field]`` or raise a DataError naming file, line and field."""
    if field not in record:
        raise DataError(f"{path}:{lineno}: missing field '{field}'")
    value = record[field]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(
            f"{path}:{lineno}: field '{field}' must be {names}, got {type(value).__name__}"
        )
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
