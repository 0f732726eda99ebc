"""Create an exported model in an Ollama server through its HTTP API (no ``ollama`` CLI
needed on the machine that exported it): the GGUF file is uploaded as a blob
(``POST /api/blobs/sha256:…``) and the model created from it with the template, stop
sequences, parameters and system prompt of the export's Modelfile (``POST /api/create``),
as ``ollama create NAME -f Modelfile`` does after parsing the Modelfile.

    create_in_ollama("dist/", "clinical-3", host="http://127.0.0.1:11434")
"""

from __future__ import annotations

import json
from pathlib import Path

from medprune.errors import ExportError
from medprune.export.bundle import MANIFEST
from medprune.export.modelfile import OllamaModel


def read_ollama_model(export_dir: str | Path) -> OllamaModel:
    """The Ollama model recorded in an export's ``export.json``."""
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise ExportError(f"{export_dir}: no {MANIFEST}; not a medprune GGUF export")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not data.get("ollama"):
        raise ExportError(f"{path}: exported without a Modelfile (--no-modelfile)")
    spec = OllamaModel.from_dict(data["ollama"])
    if not (Path(export_dir) / spec.gguf_name).is_file():
        raise ExportError(f"{export_dir}: {spec.gguf_name} named by {MANIFEST} is missing")
    return spec


def create_in_ollama(export_dir: str | Path, name: str, *, host: str) -> str:
    """Upload the export's GGUF file to the Ollama server at ``host`` and create model
    ``name`` from it; returns the blob digest."""
    import ollama

    spec = read_ollama_model(export_dir)
    client = ollama.Client(host=host)
    digest = client.create_blob(Path(export_dir) / spec.gguf_name)
    response = client.create(model=name, **spec.create_request(digest), stream=False)
    if getattr(response, "status", None) != "success":
        raise ExportError(f"Ollama at {host} did not create {name}: {response}")
    return digest
