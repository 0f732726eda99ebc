"""Calibration data and the layer-by-layer forward pass.

Calibration texts are joined (separated by EOS) and cut into ``num_samples`` sequences of
exactly ``seq_len`` tokens, so there is no padding and every sequence is full. The model is
then run one decoder layer at a time: :func:`capture_layer_inputs` records what the first
layer receives and the keyword arguments the model passes to each layer,
:func:`run_layer` runs one layer on those inputs to make the next layer's. Only the current
layer needs to be on the compute device.

Models that mix sliding-window and full attention (Gemma 2 and 3, Qwen2/3 and Mistral with a
sliding window) give each layer the attention mask, and Gemma 3 the rotary embedding, of its
own layer type, so the arguments are recorded per layer (:meth:`LayerInputs.for_layer`):
reusing the first layer's would be wrong as soon as the calibration sequences are longer
than the window.
"""

from __future__ import annotations

import contextlib
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
    keyword arguments the model passes to it (position embeddings, mask, ...), one dict per
    batch. ``layer_kwargs[i]`` holds the keyword arguments of layer ``i`` (they differ
    between sliding-window and full-attention layers); :meth:`for_layer` selects them."""

    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    layer_kwargs: list[list[dict[str, Any]]] | None = None

    @property
    def num_tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)

    def for_layer(self, index: int) -> LayerInputs:
        """These hidden states with the keyword arguments of decoder layer ``index``."""
        if self.layer_kwargs is None:
            return self
        return LayerInputs(self.hidden, self.layer_kwargs[index], self.layer_kwargs)


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


_CACHE_KWARGS = ("cache", "past_key_values", "past_key_value")


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, token_ids: torch.Tensor, batch_size: int, device: torch.device
) -> LayerInputs:
    """Run the embeddings of ``model`` on ``token_ids`` and capture the inputs of decoder
    layer 0 and the keyword arguments of every decoder layer.

    Each layer's ``forward`` is swapped for a recorder for the duration (the layers pass
    their input through unchanged and the last one stops the model), so no layer is
    computed and only the embedding and rotary modules visit ``device``.
    """
    inner = model.model
    layers = list(inner.layers)
    layer_kwargs: list[list[dict[str, Any]]] = [[] for _ in layers]
    captured = LayerInputs(hidden=[], layer_kwargs=layer_kwargs)

    def recorder(index: int):
        def forward(*args, **kwargs):
            hidden = args[0] if args else kwargs.pop("hidden_states")
            if isinstance(hidden, tuple):  # what the recorder before returned
                hidden = hidden[0]
            kw = {k: v for k, v in kwargs.items() if k not in _CACHE_KWARGS}
            kw["use_cache"] = False
            layer_kwargs[index].append(kw)
            if index == 0:
                captured.hidden.append(hidden)
            if index == len(layers) - 1:
                raise _Captured
            # A tuple suits both decoder loops: ``h = layer(h)`` (the next recorder
            # unwraps it) and ``h = layer(h)[0]`` (older transformers releases).
            return (hidden,)

        return forward

    saved = [layer.__dict__.get("forward") for layer in layers]
    moved = [m for name, m in inner.named_children() if name != "layers"]
    for m in moved:
        m.to(device)
    for index, layer in enumerate(layers):
        layer.forward = recorder(index)
    try:
        for start in range(0, token_ids.shape[0], batch_size):
            batch = token_ids[start : start + batch_size].to(device)
            with contextlib.suppress(_Captured):
                inner(input_ids=batch, use_cache=False)
    finally:
        for layer, forward in zip(layers, saved, strict=True):
            if forward is None:
                del layer.forward
            else:
                layer.forward = forward
        for m in moved:
            m.to("cpu")
    if len(captured.hidden) != len(layer_kwargs[-1]):
        raise PruneError(
            f"calibration: {type(model).__name__} did not run every decoder layer on the "
            "calibration batches; its decoder loop is not supported"
        )
    captured.kwargs = layer_kwargs[0]
    return captured


def layer_output(out) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_layer(
    layer: nn.Module, inputs: LayerInputs, *, in_place: bool = False
) -> list[torch.Tensor]:
    """Outputs of ``layer`` for every batch of ``inputs`` (the next layer's inputs).

    With ``in_place`` each batch's output replaces its input in ``inputs.hidden`` as soon as
    it is computed (and that list is returned), so the activations of the calibration set
    are held once, not twice.
    """
    if not in_place:
        return [
            layer_output(layer(h, **kw)) for h, kw in zip(inputs.hidden, inputs.kwargs, strict=True)
        ]
    for i, kw in enumerate(inputs.kwargs):
        inputs.hidden[i] = layer_output(layer(inputs.hidden[i], **kw))
    return inputs.hidden


def check_calibration_size(num_samples: int, min_samples: int = 1) -> None:
    if num_samples < min_samples:
        raise PruneError(
            f"prune.calibration.num_samples={num_samples} is too small; need at least {min_samples}"
        )
