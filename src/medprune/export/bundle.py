"""Export one model for llama.cpp / Ollama: GGUF files, a ``Modelfile`` and ``export.json``.

    out = export_for_ollama("registry/clinical-llama/3", "dist/", serve=cfg.serve)
    out.modelfile   # dist/Modelfile  ->  cd dist && ollama create clinical -f Modelfile

Everything is validated (architecture, tokenizer, chat template, outtypes) before the first
file is written; files are written under temporary names and renamed, and a failure removes
what this call wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medprune.config.serve import ServeConfig
from medprune.errors import ExportError
from medprune.export.gguf import make_readable, model_shape, write_gguf
from medprune.export.modelfile import ollama_model
from medprune.io.atomic import (
    COMPLETE_MARKER,
    atomic_write_json,
    atomic_write_text,
    write_completion_marker,
)

MODELFILE = "Modelfile"
MANIFEST = "export.json"


@dataclass(frozen=True)
class ExportResult:
    gguf: dict[str, Path]
    modelfile: Path | None
    manifest: Path
    shape: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        return [*self.gguf.values(), *([self.modelfile] if self.modelfile else []), self.manifest]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def export_name(ref: str, model_dir: str | Path) -> str:
    """The default file stem (and ``ollama create`` name) for an export of ``ref``: ``NAME-ALIAS``
    / ``NAME-VERSION`` for a registry reference, ``NAME-VERSION`` for a registry version folder
    (``registry/NAME/3``), else the last part of the reference."""
    model_dir = Path(model_dir)
    if "://" not in ref and "@" in ref:
        return ref.replace("@", "-")
    if model_dir.name.isdigit() and model_dir.parent.name:
        return f"{model_dir.parent.name}-{model_dir.name}"
    return ref.rstrip("/").split("/")[-1].replace("@", "-")


def export_for_ollama(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    serve: ServeConfig | None = None,
    name: str | None = None,
    modelfile: bool = True,
    source: str | None = None,
    writer: str = "auto",
) -> ExportResult:
    """GGUF files (``serve.gguf.outtypes``) plus an Ollama Modelfile (``serve.ollama``) for
    ``model_dir`` in ``out_dir``. ``modelfile=False`` writes only the GGUF files; ``writer``
    as :func:`medprune.export.gguf.write_gguf`."""
    from transformers import AutoTokenizer

    serve = serve or ServeConfig()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{model_dir}: no config.json; not a Hugging Face model directory")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    shape = model_shape(config)
    name = name or model_dir.name
    if not name[0].isalnum():
        name = "model"
    outtypes = list(dict.fromkeys(serve.gguf.outtypes))
    spec = None
    if modelfile:
        if serve.ollama.quantization not in outtypes:
            raise ExportError(
                f"serve.ollama.quantization {serve.ollama.quantization!r} is not among "
                f"serve.gguf.outtypes {outtypes}; the Modelfile must name an exported file"
            )
        tok = AutoTokenizer.from_pretrained(model_dir)
        spec = ollama_model(
            tok,
            gguf_name=f"{name}-{serve.ollama.quantization}.gguf",
            ollama=serve.ollama,
            context_length=shape.context_length,
            model_name=source or str(model_dir),
        )
    written = write_gguf(
        model_dir,
        out_dir,
        outtypes=outtypes,
        name=name,
        description=f"medprune export of {source or model_dir}",
        writer=writer,
    )
    files = written.files
    try:
        mf = None
        if spec is not None:
            mf = out_dir / MODELFILE
            atomic_write_text(mf, spec.modelfile())
            make_readable(mf)
        manifest = out_dir / MANIFEST
        atomic_write_json(
            manifest,
            {
                "source": source or str(model_dir),
                "name": name,
                "shape": shape.to_dict(),
                "files": {
                    t: {"file": p.name, "bytes": p.stat().st_size, "sha256": _sha256(p)}
                    for t, p in files.items()
                },
                "modelfile": MODELFILE if mf else None,
                "ollama": spec.to_dict() if spec else None,
                "writer": written.writer,
                "writer_reason": written.reason,
            },
        )
        make_readable(manifest)
    except BaseException:
        for p in files.values():
            p.unlink(missing_ok=True)
        if spec is not None:
            (out_dir / MODELFILE).unlink(missing_ok=True)
        raise
    return ExportResult(gguf=files, modelfile=mf, manifest=manifest, shape=shape.to_dict())


@contextmanager
def with_serving_exports(
    model_dir: str | Path,
    formats: list[str],
    *,
    serve: ServeConfig | None = None,
    name: str = "model",
) -> Iterator[Path]:
    """A directory holding ``model_dir``'s files plus the serving ``formats`` (``registry.export``):
    for ``gguf``, the GGUF files, Modelfile and export.json. The model files are hard-linked
    (copied where links are impossible) into a temporary directory, removed afterwards; with no
    formats ``model_dir`` itself is yielded. Export errors surface before anything is registered."""
    model_dir = Path(model_dir)
    if not formats:
        yield model_dir
        return
    unknown = sorted(set(formats) - {"gguf"})
    if unknown:
        raise ExportError(f"registry.export {unknown}: supported formats: gguf")
    with tempfile.TemporaryDirectory(prefix="medprune-register-export-") as work:
        staged = Path(work) / model_dir.name
        staged.mkdir()
        for src in sorted(model_dir.iterdir()):
            if src.is_file():
                try:
                    os.link(src, staged / src.name)
                except OSError:
                    shutil.copy2(src, staged / src.name)
        export_for_ollama(model_dir, staged, serve=serve, name=name)
        if (staged / COMPLETE_MARKER).exists():  # the marker must list the added files too
            (staged / COMPLETE_MARKER).unlink()
            write_completion_marker(staged)
        yield staged
