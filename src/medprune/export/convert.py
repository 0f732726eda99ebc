"""Which GGUF writer exports a model, and llama.cpp's own converter driven as a subprocess.

The llama.cpp project maintains ``convert_hf_to_gguf.py`` (with its matching ``gguf-py``) for
every architecture its engine runs; it reads the shapes it writes from ``config.json``
(``head_dim``, ``num_attention_heads`` / ``num_key_value_heads`` as kept, ``intermediate_size``,
``num_hidden_layers``) and from the tensors, so a width- or depth-pruned checkpoint that
medprune saves (uniform shapes, ``head_dim`` explicit) converts like a dense one. We therefore
prefer it for every family it knows (:data:`CONVERTER_FAMILIES`), pinned with the source archive
(:mod:`medprune.export.llama_cpp`). medprune's own writer (:mod:`medprune.export.gguf`) is kept
for the case the converter cannot produce a file: a byte-level BPE tokenizer whose pre-tokenizer
llama.cpp's converter does not recognise (it identifies pre-tokenizers by hashing the ids of a
fixed text, so a retrained or edited tokenizer is refused), and for Llama / Mistral / Qwen2 when
the converter has not been fetched. Families llama.cpp cannot run as pruned (or at all) are
refused with what llama.cpp lacks (:func:`refusal`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medprune.errors import ExportError
from medprune.export.llama_cpp import LLAMA_CPP_PYTHON_VERSION, LlamaCpp, default_root

#: HF ``model_type`` -> the GGUF architecture llama.cpp's converter writes for it.
CONVERTER_FAMILIES = {
    "llama": "llama",  # default, llama3 (rope_freqs tensor), linear and yarn rope scaling
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",  # the multimodal checkpoint's language model (vision tower left out)
    "phi3": "phi3",
}

#: Families medprune's own writer can write (default RoPE, byte-level BPE).
WRITER_FAMILIES = ("llama", "mistral", "qwen2")

CONVERTER = f"llama.cpp convert_hf_to_gguf.py (llama-cpp-python {LLAMA_CPP_PYTHON_VERSION})"
WRITER = "medprune gguf.GGUFWriter (medprune.export.gguf)"

_UNKNOWN_PRE = "BPE pre-tokenizer was not recognized"


@dataclass(frozen=True)
class WriterChoice:
    """The writer used for an export and why (recorded in export.json)."""

    writer: str
    reason: str


def _inner(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's config (a multimodal Gemma 3 nests it under ``text_config``)."""
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) else config


def _sliding_window(config: dict[str, Any]) -> int | None:
    window = config.get("sliding_window")
    if not window:
        return None
    model_type = config.get("model_type")
    if model_type == "qwen2" and not config.get("use_sliding_window", False):
        return None
    if model_type == "mistral" and window >= int(config.get("max_position_embeddings") or 0):
        return None  # a window as long as the context is no window
    return int(window) if model_type in ("mistral", "qwen2") else None


#: llama.cpp architectures whose query / output projections are hidden_size x hidden_size.
_SQUARE_ATTENTION = ("qwen2", "phi3")

#: llama.cpp architectures whose output layer is always the token embedding.
_TIED_ONLY = ("gemma", "gemma2")

#: llama.cpp scales Gemma 2 / 3 queries by 1/sqrt(head_dim), except for the layer count of
#: the 27B models (1/sqrt(hidden_size / heads)); it has no key for query_pre_attn_scalar.
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def _attention_scale_refusal(config: dict[str, Any]) -> str | None:
    arch = CONVERTER_FAMILIES.get(str(config.get("model_type")))
    if arch not in _GEMMA_27B_LAYERS:
        return None
    inner = _inner(config)
    wanted = inner.get("query_pre_attn_scalar")
    heads = int(inner["num_attention_heads"])
    head_dim = int(inner.get("head_dim") or inner["hidden_size"] // heads)
    if int(inner["num_hidden_layers"]) == _GEMMA_27B_LAYERS[arch]:
        used, how = inner["hidden_size"] / heads, "hidden_size / num_attention_heads"
    else:
        used, how = float(head_dim), "head_dim"
    if wanted is None or float(wanted) == used:
        return None
    return (
        f"query_pre_attn_scalar {wanted}: llama.cpp scales {arch} attention by "
        f"1/sqrt({how}) = 1/sqrt({used:g}) for this shape and has no setting for "
        "query_pre_attn_scalar, so the exported model would attend differently"
    )


def refusal(config: dict[str, Any]) -> str | None:
    """Why llama.cpp cannot run this checkpoint as exported, or None when it can."""
    model_type = config.get("model_type")
    if model_type not in CONVERTER_FAMILIES:
        return (
            f"architecture {model_type!r} (config.json model_type) is not one medprune exports "
            f"to GGUF (supported: {', '.join(sorted(CONVERTER_FAMILIES))}); serve it with the "
            "Vertex AI target (vLLM) instead"
        )
    scale = _attention_scale_refusal(config)
    if scale:
        return scale
    arch = CONVERTER_FAMILIES[model_type]
    inner = _inner(config)
    heads, hidden = int(inner["num_attention_heads"]), int(inner["hidden_size"])
    head_dim = int(inner.get("head_dim") or hidden // heads)
    if arch in _SQUARE_ATTENTION and heads * head_dim != hidden:
        return (
            f"num_attention_heads x head_dim = {heads} x {head_dim} = {heads * head_dim} is not "
            f"hidden_size {hidden}: llama.cpp's {arch} graph sizes the query and output "
            "projections hidden_size x hidden_size, so heads pruned without the same share of "
            "hidden channels cannot be loaded (prune hidden channels with the heads, "
            "prune.structured.prune_hidden, or prune depth)"
        )
    if arch in _TIED_ONLY and _inner(config).get("tie_word_embeddings") is False:
        return (
            f"tie_word_embeddings false: llama.cpp's {arch} graph always uses the token "
            "embedding as the output layer (its converter drops lm_head.weight), so a separate "
            "output layer cannot be exported"
        )
    window = _sliding_window(config)
    if window is not None:
        return (
            f"sliding-window attention (sliding_window={window}): llama.cpp runs {model_type} as "
            f"its '{CONVERTER_FAMILIES[model_type]}' architecture, which has no sliding-window "
            "attention, so tokens further apart than the window would attend differently than "
            "in PyTorch; set use_sliding_window false / sliding_window null only if the model "
            "was trained without it"
        )
    return None


def run_converter(
    lc: LlamaCpp, model_dir: Path, out_file: Path, outtype: str, *, name: str
) -> subprocess.CompletedProcess[str]:
    """Run llama.cpp's converter (its own gguf-py first on the path) for one outtype."""
    lc.require_source()
    return subprocess.run(
        [
            sys.executable,
            str(lc.converter.resolve()),
            str(model_dir.resolve()),
            "--outfile",
            str(out_file.resolve()),
            "--outtype",
            outtype,
            "--model-name",
            name,
        ],
        env=lc.converter_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def convert_to(
    lc: LlamaCpp,
    model_dir: Path,
    final: Path,
    outtype: str,
    *,
    name: str,
    config: dict[str, Any] | None = None,
) -> WriterChoice | None:
    """Write ``final`` with llama.cpp's converter (temporary name, then renamed). Returns None
    when the converter does not recognise the tokenizer's pre-tokenizer (the caller may fall
    back to medprune's writer); raises ExportError with the converter's message otherwise.
    Where the checkpoint's sliding-window layers differ from llama.cpp's default pattern
    (:func:`swa_pattern_fix`), the per-layer pattern is added to the file."""
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.", dir=final.parent) as tmp:
        out = Path(tmp) / final.name
        proc = run_converter(lc, model_dir, out, outtype, name=name)
        if proc.returncode != 0 or not out.is_file():
            log = (proc.stderr or "") + (proc.stdout or "")
            if _UNKNOWN_PRE in log:
                return None
            tail = "\n".join(log.strip().splitlines()[-8:])
            raise ExportError(
                f"llama.cpp's converter failed on {model_dir} ({outtype}), exit {proc.returncode}:"
                f"\n{tail}"
            )
        pattern = swa_pattern_fix(config or {})
        if pattern is not None:
            write_swa_pattern(out, pattern)
        os.replace(out, final)
    return WriterChoice(CONVERTER, "the converter the llama.cpp project maintains")


def llama_cpp_for_export(root: Path | None = None) -> LlamaCpp | None:
    """The fetched llama.cpp source (converter), or None when it has not been fetched."""
    lc = LlamaCpp(root or default_root())
    return lc if lc.has_source() else None


#: llama.cpp's default sliding-window layer pattern per architecture: layer ``i`` slides iff
#: ``i % period < period - 1`` (``llama_hparams::set_swa_pattern``).
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6}


def sliding_layers(config: dict[str, Any]) -> list[bool] | None:
    """Which layers use sliding-window attention (config.json ``layer_types``), or None."""
    inner = _inner(config)
    types = inner.get("layer_types")
    if not types:
        return None
    return [t == "sliding_attention" for t in types]


def swa_pattern_fix(config: dict[str, Any]) -> list[bool] | None:
    """The per-layer sliding pattern to write when llama.cpp's default pattern for the
    architecture differs from the checkpoint's ``layer_types`` (as after depth pruning, which
    removes layers from the period-2 / period-6 pattern), else None."""
    arch = CONVERTER_FAMILIES.get(str(config.get("model_type")))
    layers = sliding_layers(config)
    if arch not in _SWA_PERIOD or layers is None:
        return None
    period = _SWA_PERIOD[arch]
    default = [i % period < period - 1 for i in range(len(layers))]
    return None if layers == default else layers


def write_swa_pattern(path: Path, pattern: list[bool]) -> None:
    """Rewrite ``path`` with ``ARCH.attention.sliding_window_pattern`` set to one bool per
    layer (llama.cpp reads the array form before its default period)."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(str(path))
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    key = gguf.Keys.Attention.SLIDING_WINDOW_PATTERN.format(arch=arch)
    tmp = path.with_name(f".{path.name}.swa.partial")
    try:
        writer = gguf.GGUFWriter(str(tmp), arch=arch, endianess=reader.endianess)
        copy_with_new_metadata(
            reader,
            writer,
            {key: MetadataDetails(gguf.GGUFValueType.ARRAY, list(pattern))},
            [key],
        )
        del reader
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
