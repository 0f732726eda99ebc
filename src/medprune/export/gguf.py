"""Write a Hugging Face causal LM (dense or pruned) as GGUF files for llama.cpp and Ollama.

    result = write_gguf("registry/clinical/3", "out/", outtypes=("f16", "q8_0"))
    result.files["q8_0"]  # out/clinical-q8_0.gguf; result.writer says which writer wrote it

:func:`write_gguf` prefers llama.cpp's own ``convert_hf_to_gguf.py``, run as a subprocess from
the pinned source archive (:mod:`medprune.export.convert`, :mod:`medprune.export.llama_cpp`):
it is the converter the llama.cpp project maintains for each architecture its engine runs, and
it reads pruned shapes (``head_dim``, kept heads, MLP width, layers) from config.json. Where it
cannot write a model, :func:`export_gguf`, medprune's own writer (the ``gguf`` package's
:class:`gguf.GGUFWriter`), writes Llama / Mistral / Qwen2 with the default rotary embedding
and a byte-level BPE tokenizer, every shape read from the model itself:

- ``attention.head_count`` / ``head_count_kv`` are the *kept* heads;
- ``attention.key_length`` = ``value_length`` = ``rope.dimension_count`` = ``head_dim``,
  which after width pruning is no longer ``embedding_length / head_count`` (Ollama's own
  safetensors import derives it that way and breaks on Minitron-style models);
- ``block_count`` is the number of layers left after depth pruning;
- ``feed_forward_length`` the pruned MLP width;
- Q/K rows permuted to llama.cpp's rotary layout for ``llama``; Qwen2's q/k/v biases.

A model llama.cpp cannot run fails before a file is written, naming what is missing. Files
are written under a temporary name and renamed, with ordinary permissions.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medprune.errors import ExportError

#: GGUF weight types we write; norms and biases always stay float32.
OUTTYPES = ("f32", "f16", "bf16", "q8_0")

_QK_BLOCK = 32  # q8_0 quantizes rows in blocks of 32 values


@dataclass(frozen=True)
class GGUFShape:
    """The model shape written to the GGUF header (what llama.cpp sizes its graph by)."""

    architecture: str
    block_count: int
    embedding_length: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    context_length: int
    vocab_size: int
    rms_norm_eps: float
    rope_freq_base: float
    tied_embeddings: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rope_type(config: dict[str, Any]) -> str:
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return str(params.get("rope_type") or params.get("type") or "default")


def _rope_theta(config: dict[str, Any]) -> float:
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if isinstance(params.get("full_attention"), dict):  # Gemma 3: one set per layer kind
        params = params["full_attention"]
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    return float(theta)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's config (a multimodal Gemma 3 nests it under ``text_config``)."""
    inner = config.get("text_config")
    return {**inner, "model_type": config.get("model_type")} if isinstance(inner, dict) else config


def model_shape(config: dict[str, Any], tensor_names: Iterable[str] = ()) -> GGUFShape:
    """Read the GGUF shape from a model's ``config.json`` contents.

    Raises :class:`ExportError` naming the architecture or field when llama.cpp cannot run
    the model (:func:`medprune.export.convert.refusal`) or the shape is inconsistent.
    """
    from medprune.export.convert import CONVERTER_FAMILIES, refusal

    reason = refusal(config)
    if reason:
        raise ExportError(reason)
    model_type = str(config.get("model_type"))
    config = text_config(config)
    heads = int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads") or heads)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    if heads % kv:
        raise ExportError(
            f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
        )
    if head_dim % 2:
        raise ExportError(f"head_dim {head_dim} is odd; rotary embeddings need an even head_dim")
    names = set(tensor_names)
    tied = bool(config.get("tie_word_embeddings", model_type.startswith("gemma"))) or (
        bool(names) and "lm_head.weight" not in names
    )
    return GGUFShape(
        architecture=CONVERTER_FAMILIES[model_type],
        block_count=int(config["num_hidden_layers"]),
        embedding_length=hidden,
        feed_forward_length=int(config["intermediate_size"]),
        head_count=heads,
        head_count_kv=kv,
        head_dim=head_dim,
        context_length=int(config.get("max_position_embeddings") or 2048),
        vocab_size=int(config["vocab_size"]),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_freq_base=_rope_theta(config),
        tied_embeddings=tied,
    )


def writer_refusal(config: dict[str, Any]) -> str | None:
    """Why medprune's own writer cannot write this model (None when it can): it writes the
    plain Llama / Mistral / Qwen2 graph with the default rotary embedding only."""
    from medprune.export.convert import WRITER_FAMILIES

    model_type = config.get("model_type")
    if model_type not in WRITER_FAMILIES:
        return (
            f"medprune's own GGUF writer handles {', '.join(WRITER_FAMILIES)} only, not "
            f"{model_type!r}; llama.cpp's converter is needed (`make llama-cpp`)"
        )
    if _rope_type(config) != "default":
        return (
            f"rope type {_rope_type(config)!r}: medprune's own GGUF writer writes the default "
            "rotary embedding only; llama.cpp's converter is needed (`make llama-cpp`)"
        )
    return None


# --- tensors ------------------------------------------------------------------------------

_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def gguf_tensor_name(hf_name: str) -> str:
    """The llama.cpp name of a Hugging Face Llama/Qwen2 tensor; ExportError for others."""
    if hf_name in _TOP_MAP:
        return _TOP_MAP[hf_name]
    m = _LAYER_NAME.match(hf_name)
    if m and m.group(2) in _LAYER_MAP:
        return f"blk.{m.group(1)}.{_LAYER_MAP[m.group(2)]}"
    raise ExportError(
        f"tensor {hf_name!r} has no GGUF counterpart; the model is not a plain "
        "Llama/Mistral/Qwen2 checkpoint"
    )


def permute_rotary_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a q/k projection (or its bias) from Hugging Face's rotate-half
    rotary layout to llama.cpp's interleaved one, per head (``n_head`` heads of that
    projection). Works for any head_dim, so pruned shapes need no special case."""
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise ExportError(f"projection with {rows} rows cannot be split into {n_head} heads")
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _encode(name: str, data: np.ndarray, outtype: str) -> tuple[np.ndarray, Any]:
    """(array, raw dtype or None) to hand to GGUFWriter.add_tensor."""
    import gguf

    if data.ndim == 1 or outtype == "f32":
        return data.astype(np.float32), None
    if outtype == "f16":
        return data.astype(np.float16), None
    if outtype == "bf16":
        return gguf.quants.quantize(
            data.astype(np.float32), gguf.GGMLQuantizationType.BF16
        ), gguf.GGMLQuantizationType.BF16
    if outtype == "q8_0":
        if data.shape[-1] % _QK_BLOCK:
            # as llama.cpp's converter does: rows that do not fill whole blocks stay f16
            return data.astype(np.float16), None
        return gguf.quants.quantize(
            data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0
        ), gguf.GGMLQuantizationType.Q8_0
    raise ExportError(f"outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")


_FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}


# --- tokenizer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GGUFVocab:
    model: str
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    chat_template: str | None


def _pre_tokenizer_name(tokenizer_json: dict[str, Any], has_merges: bool) -> str:
    """llama.cpp's name for the pre-tokenizer (how text is split before merges)."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts: list[Any] = (pre.get("pretokenizers") or []) if pre.get("type") == "Sequence" else [pre]
    kinds = [(p or {}).get("type") for p in parts]
    if (
        kinds == ["Digits", "ByteLevel"]
        and parts[0].get("individual_digits")
        and parts[1].get("use_regex", True)
    ):
        return "smollm"  # SmolLM / SmolLM2: digits split one by one, then the GPT-2 regex
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds and kinds[0] == "Split":
        pattern = (parts[0].get("pattern") or {}).get("Regex", "")
        if "\\p{N}{1,3}" in pattern and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in pattern:
            return "llama-bpe"
        if "\\p{N}|" in pattern.replace(" ", "") or "\\p{N}| ?" in pattern:
            return "qwen2"
    raise ExportError(
        f"tokenizer pre-tokenizer {json.dumps(pre)[:200]} is not one the GGUF export knows "
        "(SmolLM, GPT-2, Llama 3, Qwen2 byte-level BPE)"
    )


def read_vocab(model_dir: str | Path) -> GGUFVocab:
    """The tokenizer of ``model_dir`` (``tokenizer.json``, byte-level BPE) as GGUF metadata."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ExportError(
            f"{model_dir}: no tokenizer.json; the GGUF export needs a fast tokenizer file"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(
            f"{path}: tokenizer model {model.get('type')!r} is not supported (byte-level BPE only)"
        )
    tok = AutoTokenizer.from_pretrained(model_dir)
    vocab: dict[str, int] = dict(tok.get_vocab())
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # UNUSED unless named below
    for text, idx in vocab.items():
        tokens[idx] = text
        types[idx] = 1  # NORMAL
    for added in data.get("added_tokens") or []:
        types[added["id"]] = 3 if added.get("special") else 4  # CONTROL / USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    if not merges:
        raise ExportError(
            f"{path}: the BPE tokenizer has no merges; GGUF (llama.cpp's 'gpt2' tokenizer) "
            "needs at least one merge rule"
        )
    ids = {name: (getattr(tok, f"{name}_token_id", None)) for name in ("bos", "eos", "unk", "pad")}
    with_special = tok("a").input_ids
    add_bos = bool(
        ids["bos"] is not None
        and with_special
        and with_special[0] == ids["bos"]
        and tok("a", add_special_tokens=False).input_ids[:1] != [ids["bos"]]
    )
    template = tok.chat_template if isinstance(getattr(tok, "chat_template", None), str) else None
    return GGUFVocab(
        model="gpt2",
        pre=_pre_tokenizer_name(data, bool(merges)),
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=ids["bos"],
        eos_id=ids["eos"],
        unk_id=ids["unk"],
        pad_id=ids["pad"],
        add_bos=add_bos,
        chat_template=template,
    )


# --- writing ------------------------------------------------------------------------------


def _load_state(model_dir: Path) -> dict[str, np.ndarray]:
    """All tensors of the model's safetensors files as float32 numpy arrays."""
    import torch
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no *.safetensors weight files")
    state: dict[str, np.ndarray] = {}
    for f in files:
        for name, t in load_file(f).items():
            state[name] = t.to(torch.float32).numpy()
    return state


def _write_one(
    path: Path,
    shape: GGUFShape,
    vocab: GGUFVocab,
    tensors: dict[str, np.ndarray],
    outtype: str,
    *,
    name: str,
    description: str | None,
) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), shape.architecture)
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        if description:
            writer.add_description(description)
        writer.add_context_length(shape.context_length)
        writer.add_embedding_length(shape.embedding_length)
        writer.add_block_count(shape.block_count)
        writer.add_feed_forward_length(shape.feed_forward_length)
        writer.add_head_count(shape.head_count)
        writer.add_head_count_kv(shape.head_count_kv)
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
        writer.add_rope_dimension_count(shape.head_dim)
        writer.add_rope_freq_base(shape.rope_freq_base)
        writer.add_layer_norm_rms_eps(shape.rms_norm_eps)
        writer.add_vocab_size(shape.vocab_size)
        writer.add_file_type(_FILE_TYPES[outtype])
        if outtype == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_tokenizer_model(vocab.model)
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.token_types)
        if vocab.merges:
            writer.add_token_merges(vocab.merges)
        for setter, value in (
            (writer.add_bos_token_id, vocab.bos_id),
            (writer.add_eos_token_id, vocab.eos_id),
            (writer.add_unk_token_id, vocab.unk_id),
            (writer.add_pad_token_id, vocab.pad_id),
        ):
            if value is not None:
                setter(int(value))
        writer.add_add_bos_token(vocab.add_bos)
        if vocab.chat_template:
            writer.add_chat_template(vocab.chat_template)
        for gname, data in tensors.items():
            array, raw = _encode(gname, data, outtype)
            if raw is None:
                writer.add_tensor(gname, array)
            else:
                writer.add_tensor(gname, array, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def gguf_tensors(state: dict[str, np.ndarray], shape: GGUFShape) -> dict[str, np.ndarray]:
    """The model's tensors under llama.cpp names, q/k permuted for the ``llama`` architecture."""
    out: dict[str, np.ndarray] = {}
    for hf_name, data in state.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and shape.tied_embeddings:
            continue
        gname = gguf_tensor_name(hf_name)
        if shape.architecture == "llama":
            if ".attn_q." in gname:
                data = permute_rotary_rows(data, shape.head_count)
            elif ".attn_k." in gname:
                data = permute_rotary_rows(data, shape.head_count_kv)
        out[gname] = data
    layers = {int(n.split(".")[1]) for n in out if n.startswith("blk.")}
    if layers != set(range(shape.block_count)):
        raise ExportError(
            f"the weights hold layers {sorted(layers)} but config.json says num_hidden_layers="
            f"{shape.block_count}; the model directory is inconsistent"
        )
    return out


@dataclass(frozen=True)
class GGUFExport:
    """The files one export wrote (outtype -> path) and the writer that wrote them."""

    files: dict[str, Path]
    writer: str
    reason: str


def make_readable(path: Path) -> None:
    """Ordinary file permissions (rw for the owner, r for group and others, less the umask):
    temporary files are created 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _check_outtypes_and_name(outtypes: Sequence[str], name: str) -> None:
    bad = [t for t in outtypes if t not in OUTTYPES]
    if bad or not outtypes:
        raise ExportError(f"outtypes {list(outtypes)}: choose from {', '.join(OUTTYPES)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}", name):
        raise ExportError(f"export name {name!r}: letters, digits, '.', '_' and '-' only")


def write_gguf(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    outtypes: Sequence[str] = ("f16", "q8_0"),
    name: str | None = None,
    description: str | None = None,
    writer: str = "auto",
    llama_cpp_root: str | Path | None = None,
) -> GGUFExport:
    """Write ``NAME-OUTTYPE.gguf`` into ``out_dir`` for every outtype.

    ``writer``: ``auto`` (llama.cpp's converter when its source has been fetched, else
    medprune's writer where it can write the family; medprune's writer also when the
    converter does not recognise the tokenizer's pre-tokenizer), ``llama.cpp`` or
    ``medprune``. The architecture and shape are checked before a byte is written; each file
    is written under a temporary name in ``out_dir`` and renamed, and a failure removes this
    call's files, so ``out_dir`` never holds a partial GGUF.
    """
    from medprune.export import convert

    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    if writer not in ("auto", "llama.cpp", "medprune"):
        raise ExportError(f"writer {writer!r}: choose auto, llama.cpp or medprune")
    name = name or model_dir.name
    _check_outtypes_and_name(outtypes, name)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{model_dir}: no config.json; not a Hugging Face model directory")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_shape(config)  # refusals before any work
    lc = None
    if writer != "medprune":
        root = Path(llama_cpp_root) if llama_cpp_root else None
        lc = convert.llama_cpp_for_export(root)
        if lc is None and (writer == "llama.cpp" or writer_refusal(config)):
            raise ExportError(
                f"{config.get('model_type')!r} is exported with llama.cpp's converter, which "
                "has not been fetched: run `make llama-cpp` (or `python -m "
                "medprune.export.llama_cpp fetch` for the converter alone)"
            )
    reason_missing = "llama.cpp's converter has not been fetched (`make llama-cpp`)"
    if lc is None:
        files = export_gguf(
            model_dir, out_dir, outtypes=outtypes, name=name, description=description
        )
        return GGUFExport(files, convert.WRITER, reason_missing)

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    try:
        for outtype in dict.fromkeys(outtypes):
            final = out_dir / f"{name}-{outtype}.gguf"
            choice = convert.convert_to(lc, model_dir, final, outtype, name=name, config=config)
            if choice is None:
                refused = writer_refusal(config)
                if writer == "llama.cpp" or refused:
                    raise ExportError(
                        f"{model_dir}: llama.cpp's converter does not recognise the tokenizer's "
                        "pre-tokenizer (it identifies them by hashing the ids of a fixed text)"
                        + (f"; {refused}" if refused else "")
                    )
                for p in written.values():
                    p.unlink(missing_ok=True)
                files = export_gguf(
                    model_dir, out_dir, outtypes=outtypes, name=name, description=description
                )
                return GGUFExport(
                    files,
                    convert.WRITER,
                    "llama.cpp's converter does not recognise this tokenizer's pre-tokenizer",
                )
            make_readable(final)
            written[outtype] = final
    except BaseException:
        for p in written.values():
            p.unlink(missing_ok=True)
        raise
    return GGUFExport(written, convert.CONVERTER, "the converter the llama.cpp project maintains")


def export_gguf(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    outtypes: Sequence[str] = ("f16", "q8_0"),
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Path]:
    """medprune's own writer: ``NAME-OUTTYPE.gguf`` into ``out_dir`` for every outtype;
    returns outtype -> path. Llama / Mistral / Qwen2 with the default rotary embedding and a
    byte-level BPE tokenizer (:func:`writer_refusal`); :func:`write_gguf` prefers llama.cpp's
    converter and calls this where the converter cannot write the model.

    Everything is checked (architecture, rotary type, tokenizer, outtypes) before a byte is
    written; each file is written under a temporary name in ``out_dir`` and renamed, and a
    failure removes this call's files, so ``out_dir`` never holds a partial GGUF.
    """
    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    name = name or model_dir.name
    _check_outtypes_and_name(outtypes, name)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{model_dir}: no config.json; not a Hugging Face model directory")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_shape(config)  # architecture checks before loading any weight
    refused = writer_refusal(config)
    if refused:
        raise ExportError(refused)
    vocab = read_vocab(model_dir)
    state = _load_state(model_dir)
    shape = model_shape(config, state.keys())
    if len(vocab.tokens) > shape.vocab_size:
        raise ExportError(
            f"tokenizer has {len(vocab.tokens)} tokens but the model only {shape.vocab_size} rows"
        )
    if len(vocab.tokens) < shape.vocab_size:  # embedding rows past the tokenizer: padding tokens
        extra = shape.vocab_size - len(vocab.tokens)
        vocab = GGUFVocab(
            **{
                **vocab.__dict__,
                "tokens": vocab.tokens + [f"[PAD{len(vocab.tokens) + i}]" for i in range(extra)],
                "token_types": vocab.token_types + [5] * extra,
            }
        )
    tensors = gguf_tensors(state, shape)

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    try:
        for outtype in dict.fromkeys(outtypes):
            final = out_dir / f"{name}-{outtype}.gguf"
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=out_dir)
            os.close(fd)
            try:
                _write_one(
                    Path(tmp), shape, vocab, tensors, outtype, name=name, description=description
                )
                make_readable(Path(tmp))
                os.replace(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written[outtype] = final
    except BaseException:
        for p in written.values():
            p.unlink(missing_ok=True)
        raise
    return written


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (arrays reported by length), read with
    :class:`gguf.GGUFReader`."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
            out[key] = len(field.data)
        else:
            out[key] = field.contents()
    out["tensors"] = {
        t.name: (t.tensor_type.name, [int(x) for x in t.shape]) for t in reader.tensors
    }
    return out
