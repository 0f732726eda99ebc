"""The serving benchmark's work folder (``--work``): what ``--phase prepare`` leaves for
``--phase measure``.

``--work/NAME/`` holds one row: ``gguf/`` (the exported files, Modelfile, export.json and the
model's terms files) and ``row.json`` (:class:`PreparedRow`: the row's settings, its files
and the transformers-side results). ``--work/manifest.json`` (:class:`Manifest`) names the
model, the prepare run and its rows in order. A row is done when its ``row.json`` has the
same settings (:func:`row_settings`) and its files are there at their recorded sizes; a
second prepare with the same settings skips it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medprune.io.atomic import atomic_write_text

MANIFEST = "manifest.json"
ROW_FILE = "row.json"
KIND = "medprune-serving-prepare"

#: The settings a prepared row depends on (besides its spec, the model and the data).
ROW_SETTINGS = ("calib_samples", "seq_len", "ppl_texts", "logit_texts", "gen_tokens", "repeats")


class WorkspaceError(ValueError):
    """A work folder that ``--phase measure`` cannot use; the message names ``--work``."""


def _config_sha256(model_dir: Path) -> str | None:
    config = model_dir / "config.json"
    if not config.is_file():
        return None
    return hashlib.sha256(config.read_bytes()).hexdigest()


def row_settings(spec: str, model: str, data: str, threads: int, **settings: Any) -> dict:
    """Everything a prepared row depends on: the row spec, the model (resolved path and its
    config.json's sha256), the data folder, the torch threads of the transformers-side
    timings and :data:`ROW_SETTINGS`."""
    model_dir = Path(model).resolve()
    return {
        "spec": spec,
        "model": str(model_dir),
        "model_config_sha256": _config_sha256(model_dir),
        "data": str(Path(data).resolve()),
        "threads": threads,
        **{k: settings[k] for k in ROW_SETTINGS},
    }


@dataclass(frozen=True)
class PreparedRow:
    """One prepared row: its settings, its GGUF files (outtype -> path relative to the work
    folder, with byte sizes) and the row's results so far (shape, sizes, transformers-side
    checks), to which ``measure`` adds ``llama_cpp``."""

    name: str
    settings: dict[str, Any]
    files: dict[str, str]
    file_bytes: dict[str, int]
    row: dict[str, Any] = field(default_factory=dict)
    #: the run that prepared it (date, commit, command; a later prepare that reuses the row
    #: keeps this)
    prepared_by: dict[str, Any] = field(default_factory=dict)

    def paths(self, work: Path) -> dict[str, Path]:
        return {t: work / rel for t, rel in self.files.items()}

    def missing_files(self, work: Path) -> list[str]:
        """Files that are absent or not at their recorded size."""
        return [
            str(p)
            for t, p in self.paths(work).items()
            if not p.is_file() or p.stat().st_size != self.file_bytes.get(t)
        ]

    def save(self, work: Path) -> Path:
        path = work / self.name / ROW_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, work: Path, name: str) -> PreparedRow | None:
        path = work / name / ROW_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def done(cls, work: Path, name: str, settings: dict[str, Any]) -> PreparedRow | None:
        """The row prepared earlier with these settings, its files intact; else None."""
        row = cls.load(work, name)
        if row is None or row.settings != settings or row.missing_files(work):
            return None
        return row


@dataclass(frozen=True)
class Manifest:
    """``--work/manifest.json``: the model, the prepare run (its run_info, settings and load
    average at the end) and the prepared rows, in the order measure reports them."""

    model: dict[str, Any]
    run: dict[str, Any]
    settings: dict[str, Any]
    rows: list[PreparedRow]
    kind: str = KIND

    def save(self, work: Path) -> Path:
        path = work / MANIFEST
        doc = {**asdict(self), "rows": [r.name for r in self.rows]}
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, work: Path) -> Manifest:
        """The manifest in ``work`` with its rows; a missing or empty folder, a folder without
        a manifest, or a row whose files are gone is a :class:`WorkspaceError` naming
        ``--work``."""
        path = work / MANIFEST
        hint = f"run `benchmarks/serving.py --phase prepare --work {work}` first"
        if not work.is_dir():
            raise WorkspaceError(f"--work {work}: no such folder; {hint}")
        if not path.is_file():
            raise WorkspaceError(f"--work {work}: no {MANIFEST} (nothing prepared); {hint}")
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("kind") != KIND:
            raise WorkspaceError(f"--work {work}: {path} is not a serving prepare manifest")
        rows = []
        for name in doc["rows"]:
            row = PreparedRow.load(work, name)
            if row is None:
                raise WorkspaceError(f"--work {work}: row {name!r} has no {ROW_FILE}; {hint}")
            missing = row.missing_files(work)
            if missing:
                raise WorkspaceError(
                    f"--work {work}: row {name!r}: missing or changed files {missing}; {hint}"
                )
            rows.append(row)
        if not rows:
            raise WorkspaceError(f"--work {work}: {MANIFEST} lists no rows; {hint}")
        return cls(model=doc["model"], run=doc["run"], settings=doc["settings"], rows=rows)
