"""Check a model folder's safetensors weights against what its config needs, without loading
them: the headers name every tensor and its shape, and transformers' meta-device model (no
memory, no weights) names every tensor the config needs::

    found = read_safetensors_headers(model_dir)       # {name: (shape, file)}
    expected = expected_tensors(config)               # {name: shape}, tied copies grouped
    problems = compare_tensors(expected, found)       # [] when they match

transformers only logs a report when tensors are missing (it fills them with random values)
or unexpected (it drops them); medprune refuses both, and shapes that differ, naming the
tensors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medprune.errors import ModelLoadError

INDEX_FILE = "model.safetensors.index.json"
#: Files one of which a Hugging Face tokenizer needs (fast, sentencepiece, BPE, tiktoken).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "tokenizer.tiktoken",
    "tiktoken.model",
)
#: How many names an error message lists before saying "and N more".
SHOWN = 3


def name_some(names: Iterable[str], shown: int = SHOWN) -> str:
    """``'a', 'b', 'c' and 4 more``: a few names and how many more there are."""
    names = list(names)
    head = ", ".join(repr(n) for n in names[:shown])
    return head if len(names) <= shown else f"{head} and {len(names) - shown} more"


@dataclass(frozen=True)
class HeaderTensor:
    shape: tuple[int, ...]
    dtype: str
    file: str


def _read_header(path: Path) -> dict[str, HeaderTensor]:
    """Tensor names, shapes and dtypes from one file's header (the safetensors library checks
    that the header parses and that every tensor's bytes lie inside the file)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            out = {}
            for name in fh.keys():  # noqa: SIM118  a safe_open handle is not iterable
                piece = fh.get_slice(name)
                out[name] = HeaderTensor(
                    tuple(piece.get_shape()), str(piece.get_dtype()), path.name
                )
            return out
    except (SafetensorError, OSError) as exc:
        size = path.stat().st_size if path.exists() else 0
        raise ModelLoadError(
            f"{path}: not a readable safetensors file ({exc}; {size:,} bytes: truncated or corrupt?)"
        ) from None


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files the model consists of: those the index names when there is an
    index (each must exist), else every ``*.safetensors`` in the folder."""
    index = model_dir / INDEX_FILE
    if not index.is_file():
        return sorted(model_dir.glob("*.safetensors"))
    weight_map = read_index(model_dir)
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (model_dir / s).is_file()]
    if missing:
        raise ModelLoadError(
            f"{index}: {len(missing)} of {len(shards)} shard(s) missing from {model_dir}: {name_some(missing)}"
        )
    return [model_dir / s for s in shards]


def read_index(model_dir: Path) -> dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file) of a sharded checkpoint's index."""
    index = model_dir / INDEX_FILE
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{index}: not valid JSON ({exc})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelLoadError(f"{index}: no 'weight_map' of tensor names to shard files")
    bad = [
        k for k, v in weight_map.items() if not isinstance(v, str) or "/" in v or v.startswith(".")
    ]
    if bad:
        raise ModelLoadError(
            f"{index}: weight_map entries must be shard file names in the folder: {name_some(bad)}"
        )
    return weight_map


def read_safetensors_headers(model_dir: str | Path) -> dict[str, HeaderTensor]:
    """Every tensor of the model folder's safetensors files, from their headers only.

    With an index, the shards must all exist and hold exactly the tensors the index assigns
    them; a tensor in two files is an error.
    """
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    if not files:
        raise ModelLoadError(f"{model_dir}: no *.safetensors weight files")
    found: dict[str, HeaderTensor] = {}
    for path in files:
        for name, tensor in _read_header(path).items():
            if name in found:
                raise ModelLoadError(
                    f"{model_dir}: tensor {name!r} is in both {found[name].file} and {path.name}"
                )
            found[name] = tensor
    if (model_dir / INDEX_FILE).is_file():
        weight_map = read_index(model_dir)
        absent = [n for n, f in weight_map.items() if n not in found or found[n].file != f]
        if absent:
            raise ModelLoadError(
                f"{model_dir / INDEX_FILE}: {len(absent)} tensor(s) the index lists are not in the shard it names "
                f"(incomplete shard?): {name_some(absent)}"
            )
        unlisted = [n for n in found if n not in weight_map]
        if unlisted:
            raise ModelLoadError(
                f"{model_dir / INDEX_FILE}: {len(unlisted)} tensor(s) in the shards are not in the index: {name_some(unlisted)}"
            )
    return found


@dataclass
class ExpectedTensors:
    """What a config's model holds: shapes by name, and groups of names that are one tied
    tensor (the checkpoint needs only one name of a group)."""

    shapes: dict[str, tuple[int, ...]]
    tied: list[set[str]] = field(default_factory=list)
    ignore_missing: list[str] = field(default_factory=list)  # regexes, from the model class
    ignore_unexpected: list[str] = field(default_factory=list)
    renamings: list = field(
        default_factory=list
    )  # transformers WeightRenaming, checkpoint -> model
    base_model_prefix: str = ""


def meta_model(config, *, trust_remote_code: bool = False):
    """The model a config describes, on the meta device: names and shapes, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def expected_tensors(config, *, trust_remote_code: bool = False) -> ExpectedTensors:
    """Names and shapes of every tensor the model of ``config`` loads from a checkpoint."""
    model = meta_model(config, trust_remote_code=trust_remote_code)
    return expected_tensors_of(model)


def expected_tensors_of(model: torch.nn.Module) -> ExpectedTensors:
    """As :func:`expected_tensors`, for a model already built (on any device)."""
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    groups: dict[int, set[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), set()).add(name)
    tied = [g for g in groups.values() if len(g) > 1]
    # transformers ties e.g. lm_head to the embedding when the config says so (the
    # checkpoint then has only the embedding); on the meta device they may not be one object yet
    tied_keys = getattr(model, "all_tied_weights_keys", None) or {}
    for target, source in dict(tied_keys).items():
        merged = {target, source}
        for g in [g for g in tied if g & merged]:
            merged |= g
            tied.remove(g)
        tied.append(merged)
    renamings = []
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming

        renamings = [
            t for t in get_model_conversion_mapping(model) if isinstance(t, WeightRenaming)
        ]
    except (ImportError, AttributeError):  # older transformers: keys are used as saved
        pass
    return ExpectedTensors(
        shapes=shapes,
        tied=tied,
        ignore_missing=list(getattr(model, "_keys_to_ignore_on_load_missing", None) or []),
        ignore_unexpected=list(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []),
        renamings=renamings,
        base_model_prefix=getattr(model, "base_model_prefix", "") or "",
    )


def _model_key(key: str, expected: ExpectedTensors) -> str:
    """The model's name for a checkpoint key: transformers' renamings (legacy names, the
    multimodal ``language_model`` prefix) and the base-model prefix added or removed."""
    for renaming in expected.renamings:
        key, _ = renaming.rename_source_key(key)
    prefix = expected.base_model_prefix
    if prefix and key not in expected.shapes:
        if f"{prefix}.{key}" in expected.shapes:
            key = f"{prefix}.{key}"
        elif key.startswith(prefix + ".") and key[len(prefix) + 1 :] in expected.shapes:
            key = key[len(prefix) + 1 :]
    return key


@dataclass(frozen=True)
class TensorMismatch:
    missing: list[str]
    unexpected: list[str]
    mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # name, checkpoint, model

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mis_shaped)

    def messages(self, where: str) -> list[str]:
        """One line per kind of problem, each naming a few tensors and how many more."""
        out = []
        if self.missing:
            out.append(
                f"{where}: {len(self.missing)} tensor(s) the config needs are missing from the weights "
                f"(transformers would fill them with random values): {name_some(self.missing)}"
            )
        if self.unexpected:
            out.append(
                f"{where}: {len(self.unexpected)} tensor(s) in the weights are not in the model the config "
                f"describes (wrong config, or layers it does not have): {name_some(self.unexpected)}"
            )
        if self.mis_shaped:
            shown = ", ".join(
                f"{n!r} is {list(got)}, config needs {list(want)}"
                for n, got, want in self.mis_shaped[:SHOWN]
            )
            more = (
                f" and {len(self.mis_shaped) - SHOWN} more" if len(self.mis_shaped) > SHOWN else ""
            )
            out.append(
                f"{where}: {len(self.mis_shaped)} tensor(s) have the wrong shape: {shown}{more}"
            )
        return out


def compare_tensors(
    expected: ExpectedTensors, found: Mapping[str, tuple[int, ...]]
) -> TensorMismatch:
    """Missing, unexpected and mis-shaped tensors of a checkpoint (``found``: checkpoint name
    -> shape) against the model's ``expected`` tensors."""
    present: set[str] = set()
    unexpected: list[str] = []
    mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for key, shape in found.items():
        name = _model_key(key, expected)
        if name not in expected.shapes:
            if not any(re.search(p, key) or re.search(p, name) for p in expected.ignore_unexpected):
                unexpected.append(key)
            continue
        present.add(name)
        if tuple(shape) != expected.shapes[name]:
            mis_shaped.append((key, tuple(shape), expected.shapes[name]))
    optional = set()
    for group in expected.tied:
        if group & present:
            optional |= group
    missing = [
        n
        for n in expected.shapes
        if n not in present
        and n not in optional
        and not any(re.search(p, n) for p in expected.ignore_missing)
    ]
    return TensorMismatch(
        sorted(missing, key=_natural), sorted(unexpected, key=_natural), mis_shaped
    )


def _natural(name: str) -> list:
    """``layers.2`` before ``layers.10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[tuple[str, int]]:
    """``(name, count)`` of every floating-point tensor holding NaN or infinity."""
    bad = []
    for name, t in tensors:
        if t.is_floating_point() and t.device.type != "meta":
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                bad.append((name, int(finite.numel() - finite.sum())))
    return bad


def non_finite_message(where: str, bad: list[tuple[str, int]]) -> str:
    shown = ", ".join(f"{n!r} ({k:,} values)" for n, k in bad[:SHOWN])
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return f"{where}: {len(bad)} tensor(s) hold NaN or infinite values: {shown}{more}"


def check_tokenizer_files(model_dir: Path) -> None:
    """A folder without any tokenizer file gets this message, not the tokenizer loader's guess
    (it asks to install sentencepiece or tiktoken)."""
    if not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{model_dir}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); save the tokenizer "
            "with the model: tokenizer.save_pretrained(dir)"
        )
    if (
        (model_dir / "vocab.json").is_file()
        and not any((model_dir / f).is_file() for f in TOKENIZER_FILES if f != "vocab.json")
        and not (model_dir / "merges.txt").is_file()
    ):
        raise ModelLoadError(
            f"{model_dir}: vocab.json without merges.txt (a BPE tokenizer needs both)"
        )


def tokenizer_size(tokenizer) -> int:
    """One more than the largest token id (what the embedding must have rows for)."""
    ids = list(tokenizer.get_vocab().values())
    return max(max(ids) + 1 if ids else 0, len(tokenizer))


def check_vocab_fits(model_dir: Path, tokenizer, embedding_rows: int) -> None:
    """Every token id must index a row of the embedding (else a bare IndexError deep in a stage)."""
    size = tokenizer_size(tokenizer)
    if size > embedding_rows:
        raise ModelLoadError(
            f"{model_dir}: the tokenizer has token ids up to {size - 1:,} but the model's embedding has only "
            f"{embedding_rows:,} rows (config.json vocab_size); the tokenizer does not belong to this model"
        )
