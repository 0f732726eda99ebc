"""Calibration data and the layer-by-layer forward pass.

Calibration texts are joined (separated by EOS) and cut into ``num_samples`` sequences of
exactly ``seq_len`` tokens, so there is no padding and every sequence is full. The model is
then run one decoder layer at a time: :func:`capture_layer_inputs` records what the first
layer receives, :func:`run_layer` runs one layer on those inputs to make the next layer's.
Only the current layer needs to be on the compute device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medprune.errors import DataError, PruneError
from medprune.io.jsonl import read_texts


def load_calibration_texts(path: str | Path, num_samples: int | None = None) -> list[str]:
    """The ``text`` fields of a JSONL file, the first ``num_samples`` of them if given.

    Texts are joined before cutting into sequences, so fewer, longer texts are fine:
    :func:`calibration_token_batches` says if they hold too few tokens.
    """
    texts = read_texts(path)
    return texts[:num_samples] if num_samples else texts


def calibration_token_ids(
    tokenizer, texts: list[str], num_samples: int, seq_len: int
) -> torch.Tensor:
    """``[num_samples, seq_len]`` token ids cut from the joined ``texts``.

    Raises a :class:`DataError` naming the counts when the texts hold fewer than
    ``num_samples * seq_len`` tokens.
    """
    if not texts:
        raise DataError("calibration: no texts given (prune.calibration.data is empty)")
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    need = num_samples * seq_len
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise DataError(
            f"calibration: {len(texts)} texts hold {len(ids)} tokens, but "
            f"prune.calibration.num_samples={num_samples} x seq_len={seq_len} needs {need}; "
            "add texts or lower num_samples / seq_len"
        )
    return torch.tensor(ids[:need], dtype=torch.long).reshape(num_samples, seq_len)


@dataclass
class LayerInputs:
    """What a decoder layer is called with: hidden states (one tensor per batch) and the
    keyword arguments the model passes to every layer (position embeddings, mask, ...)."""

    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)


class _Captured(Exception):
    pass


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, token_ids: torch.Tensor, batch_size: int, device: torch.device
) -> LayerInputs:
    """Run the embeddings of ``model`` on ``token_ids`` and capture the inputs of decoder
    layer 0. Only the embedding and rotary modules visit ``device``."""
    inner = model.model
    layer0 = inner.layers[0]
    captured = LayerInputs(hidden=[])

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        kw = {k: v for k, v in kwargs.items() if k not in ("cache", "past_key_values", "past_key_value")}
        kw["use_cache"] = False
        captured.hidden.append(hidden)
        captured.kwargs.append(kw)
        raise _Captured

    moved = [m for name, m in inner.named_children() if name != "layers"]
    for m in moved:
        m.to(device)
    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, token_ids.shape[0], batch_size):
            batch = token_ids[start : start + batch_size].to(device)
            try:
                inner(input_ids=batch, use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
        for m in moved:
            m.to("cpu")
    return captured


def layer_output(out) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: LayerInputs, *, in_place: bool = False) -> list[torch.Tensor]:
    """Outputs of ``layer`` for every batch of ``inputs`` (the next layer's inputs).

    With ``in_place`` each batch's output replaces its input in ``inputs.hidden`` as soon as
    it is computed (and that list is returned), so the activations of the calibration set
    are held once, not twice.
    """
    if not in_place:
        return [layer_output(layer(h, **kw)) for h, kw in zip(inputs.hidden, inputs.kwargs)]
    for i, kw in enumerate(inputs.kwargs):
        inputs.hidden[i] = layer_output(layer(inputs.hidden[i], **kw))
    return inputs.hidden


def check_calibration_size(num_samples: int, min_samples: int = 1) -> None:
    if num_samples < min_samples:
        raise PruneError(
            f"prune.calibration.num_samples={num_samples} is too small; need at least {min_samples}"
        )
