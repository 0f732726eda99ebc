"""How a config that does not validate is reported: one line per field, by its dotted name,
with a hint where YAML 1.1 read an unquoted value as another type than it looks."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class YamlSurprise:
    """An unquoted value that YAML 1.1 (PyYAML) reads as another type than it looks."""

    line: int
    text: str
    hint: str
    fatal: bool = False  # never what anyone means (base-60 numbers)


def format_validation_errors(
    exc: ValidationError, origin: str, surprises: dict[str, YamlSurprise] | None = None
) -> str:
    lines = [f"{origin}: invalid config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        hint = (surprises or {}).get(loc)
        if hint:
            msg = f"{msg} (line {hint.line}: {hint.hint})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)
