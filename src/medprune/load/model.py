"""Load and save Hugging Face causal LMs safely (safetensors only, no remote code by default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medprune.errors import ModelLoadError
from medprune.io.atomic import (
    OWN_PREFIX,
    IncompleteDirectoryError,
    check_complete,
    marked_directory,
)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def check_model_dir(model_dir: str | Path) -> Path:
    """Check that ``model_dir`` holds a config and safetensors weights; refuse pickle weights."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: model directory not found")
    if any(p.name.startswith(OWN_PREFIX) for p in model_dir.iterdir()):
        # Written by medprune (save_model, medprune_* files): only a finished one is a model.
        try:
            check_complete(model_dir)
        except IncompleteDirectoryError as exc:
            raise ModelLoadError(str(exc)) from None
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir}: no config.json; not a Hugging Face model directory")
    safetensors = sorted(model_dir.glob("*.safetensors"))
    if not safetensors:
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"{model_dir}: only pickle weights found ({', '.join(pickles)}); medprune loads "
                "safetensors only, because pickle files can run arbitrary code. Convert them once in "
                "a trusted environment: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, "
                "safe_serialization=True)"
            )
        raise ModelLoadError(f"{model_dir}: no *.safetensors weight files")
    return model_dir


def read_model_config(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: unreadable config ({exc})") from None


def check_weights_match_config(model_dir: Path, *, trust_remote_code: bool = False) -> None:
    """Refuse weights that lack tensors the config needs, hold tensors it does not describe, or
    differ in shape, naming a few of them (transformers would only log a report and fill
    missing tensors with random values). Reads the safetensors headers, not the weights."""
    from transformers import AutoConfig

    from medprune.load.weights import compare_tensors, expected_tensors, read_safetensors_headers

    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        expected = expected_tensors(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{model_dir / 'config.json'}: cannot build the model it describes ({exc})"
        ) from None
    found = read_safetensors_headers(model_dir)
    mismatch = compare_tensors(expected, {name: t.shape for name, t in found.items()})
    if mismatch:
        raise ModelLoadError("; ".join(mismatch.messages(str(model_dir))))


def check_finite_weights(model, model_dir: str | Path) -> None:
    """Refuse a model with NaN or infinite weights, naming a few tensors and how many more."""
    from medprune.load.weights import non_finite_message, non_finite_tensors

    bad = non_finite_tensors(model.state_dict().items())
    if bad:
        raise ModelLoadError(non_finite_message(str(model_dir), bad))


#: Attribute of a language-model view that holds the multimodal model it came from.
MULTIMODAL_PARENT = "_medprune_multimodal_parent"


def language_model_view(model):
    """A causal LM over the language model of a multimodal Gemma 3 model (MedGemma 4B), or
    ``model`` itself for a text-only model.

    The view is a ``Gemma3ForCausalLM`` that shares the multimodal model's language model and
    ``lm_head`` (no copy) and remembers the multimodal model, so pruning, evaluation and
    recovery work on the text model and :func:`save_model` writes the whole multimodal
    checkpoint back (vision tower and projector unchanged)."""
    if getattr(model.config, "model_type", None) != "gemma3":
        return model
    from transformers import Gemma3ForCausalLM

    inner = model.model
    with torch.device("meta"):
        view = Gemma3ForCausalLM(model.config.text_config)
    view.model = inner.language_model
    view.lm_head = model.lm_head
    view.config = inner.language_model.config
    view.generation_config = model.generation_config
    object.__setattr__(view, MULTIMODAL_PARENT, model)  # not a submodule: not counted or pruned
    view.eval()
    return view


def with_language_model(view):
    """The model to save for ``view``: its multimodal parent with the (possibly pruned,
    possibly replaced) language model put back, or ``view`` itself."""
    parent = getattr(view, MULTIMODAL_PARENT, None)
    if parent is None:
        return view
    parent.model.language_model = view.model
    parent.lm_head = view.lm_head
    parent.config.text_config = view.config
    if getattr(view.config, "tie_word_embeddings", False):
        parent.lm_head.weight = view.model.embed_tokens.weight
    return parent


def load_model(
    model_dir: str | Path,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    device: str | torch.device = "cpu",
):
    """Load ``(model, tokenizer)`` from a local directory of safetensors weights.

    The model is returned in eval mode. ``trust_remote_code`` stays off unless the user asks.
    A multimodal Gemma 3 checkpoint (``model_type: gemma3``) comes back as a view of its
    language model (:func:`language_model_view`); :func:`save_model` saves the whole model.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medprune.load.weights import check_tokenizer_files, check_vocab_fits

    model_dir = check_model_dir(model_dir)
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} not supported; use one of {sorted(DTYPES)}")
    check_weights_match_config(model_dir, trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            dtype=DTYPES[dtype],
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(f"{model_dir}: cannot load model: {exc}") from exc
    check_tokenizer_files(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir}: cannot load tokenizer: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    check_vocab_fits(model_dir, tokenizer, model.get_input_embeddings().weight.shape[0])
    check_finite_weights(model, model_dir)
    model = language_model_view(model)
    model.to(device)
    model.eval()
    return model, tokenizer


_LAYER_TYPES = ("full_attention", "sliding_attention")


def _rope_scaling(params: dict[str, Any]) -> dict[str, Any] | None:
    if params.get("rope_type", "default") == "default":
        return None
    return {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}


def legacy_rope_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The rotary settings of a transformers 5 ``config.json`` (``rope_parameters``) in the
    spelling transformers 4.x reads (``rope_theta``, ``rope_scaling``, Gemma 3's
    ``rope_local_base_freq``, Phi-3's ``partial_rotary_factor``); keys already present are
    left out. Without them 4.x loads the model with its default base and no llama3 scaling."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or not params:
        return {}
    out: dict[str, Any] = {}
    if set(params) <= set(_LAYER_TYPES):  # per layer type (Gemma 3)
        full, sliding = params.get("full_attention", {}), params.get("sliding_attention", {})
        if "rope_theta" in full:
            out["rope_theta"] = full["rope_theta"]
        if "rope_theta" in sliding:
            out["rope_local_base_freq"] = sliding["rope_theta"]
        out["rope_scaling"] = _rope_scaling(full)
    else:
        if "rope_theta" in params:
            out["rope_theta"] = params["rope_theta"]
        if "partial_rotary_factor" in params:
            out["partial_rotary_factor"] = params["partial_rotary_factor"]
        out["rope_scaling"] = _rope_scaling(params)
    return {k: v for k, v in out.items() if k not in config}


def write_legacy_rope_keys(config_path: Path) -> None:
    """Add :func:`legacy_rope_keys` to ``config_path`` (and to a nested ``text_config``), so
    that a model saved with transformers 5 keeps its rotary settings under 4.x."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(legacy_rope_keys(config))
    if isinstance(config.get("text_config"), dict):
        config["text_config"].update(legacy_rope_keys(config["text_config"]))
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_model(
    model,
    tokenizer,
    out_dir: str | Path,
    *,
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Save a model and tokenizer as safetensors into ``out_dir``, complete or not at all (a
    language model view of a multimodal model saves the multimodal model, see
    :func:`with_language_model`).

    ``extra_files`` maps file names to JSON-serialisable objects written beside the weights
    (for example ``medprune_config.json``). The files are written in place (no directory
    rename, which Cloud Storage FUSE refuses) and a completion marker
    (:data:`~medprune.io.atomic.COMPLETE_MARKER`) is written last; :func:`check_model_dir`
    refuses a medprune directory without it. ``out_dir`` may exist if it is empty (kfp
    creates artifact directories up front) or holds an interrupted earlier attempt.
    """
    out_dir = Path(out_dir)
    model = with_language_model(model)
    try:
        with marked_directory(out_dir) as target:
            # medprune's own files first: from then on the directory says it is medprune's
            # and readers insist on the marker.
            for name, obj in (extra_files or {}).items():
                (target / name).write_text(
                    json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8"
                )
            model.save_pretrained(target, safe_serialization=True)
            write_legacy_rope_keys(target / "config.json")
            if tokenizer is not None:
                tokenizer.save_pretrained(target)
    except FileExistsError as exc:
        raise ModelLoadError(f"{out_dir}: output directory is not empty ({exc})") from None
    return out_dir


def model_size_on_disk(model_dir: str | Path) -> int:
    """Bytes of the weight files in ``model_dir``."""
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
