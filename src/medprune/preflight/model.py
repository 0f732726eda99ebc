"""Check a local model folder without loading its weights.

    result = inspect_model_folder("models/my-llama")      # raises ModelLoadError naming the file

In order, each step only when the ones before it passed: the folder holds ``config.json``
and safetensors weights (never pickle); ``config.json`` parses; the model needs no remote
code unless allowed; it is a decoder-only causal LM of a family medprune prunes; the
safetensors headers (and the shard index) name exactly the tensors, with the shapes, that the
config's model needs (built on the meta device, no memory); tokenizer files are present,
load, and every token id fits the embedding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medprune.errors import ModelLoadError, PruneError
from medprune.load.model import check_model_dir
from medprune.load.weights import (
    check_tokenizer_files,
    check_vocab_fits,
    compare_tensors,
    expected_tensors_of,
    meta_model,
    read_safetensors_headers,
)

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass
class ModelFolder:
    """What the checks learnt about a model folder (the tokenizer is reused to measure data)."""

    path: Path
    model_type: str
    n_tensors: int
    n_files: int
    embedding_rows: int
    tokenizer: Any
    meta_model: Any = None  # the config's model on the meta device: names and shapes only

    def describe(self) -> str:
        return (
            f"model {self.path}: {self.model_type}, {self.n_tensors} tensors in {self.n_files} "
            f"safetensors file(s) match config.json; tokenizer of {len(self.tokenizer):,} tokens fits "
            f"the {self.embedding_rows:,}-row embedding"
        )


def read_config_json(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: must be a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("model_type"), str) or not data["model_type"]:
        raise ModelLoadError(f"{path}: no 'model_type'; not a Hugging Face model config")
    return data


def _remote_code(model_dir: Path, raw: dict[str, Any], trust_remote_code: bool) -> None:
    """Refuse a model whose config or tokenizer points at code shipped in the folder."""
    from transformers import CONFIG_MAPPING

    if trust_remote_code:
        return
    auto_map = raw.get("auto_map")
    if raw["model_type"] not in CONFIG_MAPPING:
        hint = f" (config.json auto_map: {auto_map})" if auto_map else ""
        raise ModelLoadError(
            f"{model_dir / 'config.json'}: model_type {raw['model_type']!r} is not built into transformers; "
            f"it needs the model's own code{hint}. Set model.trust_remote_code: true only if you trust that "
            "code (medprune's pruning supports only its built-in families anyway)"
        )
    tok_cfg = model_dir / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            tok = json.loads(tok_cfg.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{tok_cfg}: not valid JSON ({exc})") from None
        if isinstance(tok, dict) and tok.get("auto_map"):
            raise ModelLoadError(
                f"{tok_cfg}: the tokenizer needs code shipped with the model (auto_map: {tok['auto_map']}); "
                "set model.trust_remote_code: true only if you trust it"
            )


def check_causal_family(model_dir: Path, raw: dict[str, Any]) -> str:
    """The config's ``model_type`` if it is a decoder-only causal LM of a family the pruning
    engine supports (:func:`medprune.prune.arch.check_supported`)."""
    from medprune.prune.arch import check_supported, supported_families

    where = model_dir / "config.json"
    model_type = raw["model_type"]
    if raw.get("is_encoder_decoder"):
        raise ModelLoadError(
            f"{where}: model_type {model_type!r} is an encoder-decoder model, not a decoder-only causal LM"
        )
    archs = raw.get("architectures") or []
    if archs and not any(isinstance(a, str) and a.endswith(_CAUSAL_SUFFIXES) for a in archs):
        raise ModelLoadError(
            f"{where}: architectures {archs} is not a causal language model (expected a *ForCausalLM "
            f"checkpoint of a decoder-only family: {', '.join(supported_families())})"
        )
    try:
        return check_supported(model_type)
    except PruneError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None


def load_tokenizer(model_dir: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{model_dir}: the tokenizer files do not load ({first})") from None


def inspect_model_folder(model_dir: str | Path, *, trust_remote_code: bool = False) -> ModelFolder:
    """Every check of a local model folder that needs no weights; raises ModelLoadError
    naming the file and the problem."""
    from transformers import AutoConfig

    model_dir = check_model_dir(model_dir)
    raw = read_config_json(model_dir)
    _remote_code(model_dir, raw, trust_remote_code)
    model_type = check_causal_family(model_dir, raw)
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{model_dir / 'config.json'}: transformers cannot read it ({exc})"
        ) from None
    found = read_safetensors_headers(model_dir)
    try:
        meta = meta_model(config, trust_remote_code=trust_remote_code)
        expected = expected_tensors_of(meta)
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{model_dir / 'config.json'}: describes no model transformers can build ({exc})"
        ) from None
    mismatch = compare_tensors(expected, {n: t.shape for n, t in found.items()})
    if mismatch:
        raise ModelLoadError("; ".join(mismatch.messages(str(model_dir))))
    check_tokenizer_files(model_dir)
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    rows = _embedding_rows(config)
    check_vocab_fits(model_dir, tokenizer, rows)
    return ModelFolder(
        model_dir,
        model_type,
        len(found),
        len({t.file for t in found.values()}),
        rows,
        tokenizer,
        meta,
    )


def _embedding_rows(config) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.vocab_size)
