"""Calibration statistics of the dense model: collect them once, reuse them for every candidate.

A search prunes the same dense model many times (other methods, sparsities, patterns). What
one layer-by-layer pass over the *dense* layers gives does not depend on the candidate:

- the calibration token ids (the texts are tokenised once);
- per layer and linear, the sum over the calibration tokens of each input feature squared
  (``||X_j||^2`` of Wanda, measured on the dense model). From these and the dense weights come
  OWL's per-layer outlier ratios (:func:`owl_outlier_ratios`) and width pruning's head,
  MLP-channel and hidden-channel energies (:func:`width_energies`);
- per layer, the block influence ``1 - cos(in, out)`` that depth pruning ranks layers by.

So a candidate pruned with OWL allocation, depth, or width with one head/MLP split costs no
dense pass at all, and Wanda/SparseGPT skip the tokenisation::

    from medprune.prune import DenseCalibration, collect_dense_calibration, prune_model

    dense = collect_dense_calibration(model, tokenizer, cfg.prune, texts)  # one dense pass
    dense.save(cache / "dense-calibration")          # optional, to share between processes
    dense = DenseCalibration.load(cache / "dense-calibration")
    for sparsity in (0.3, 0.4, 0.5):
        candidate, _ = load_model(model_dir)         # a fresh dense copy per candidate
        cfg_i = cfg.prune.model_copy(update={"sparsity": sparsity})
        result = prune_model(candidate, tokenizer, cfg_i, dense=dense)

``prune_model`` checks that ``dense`` belongs to the model it is given (architecture, and a
checksum of the weights, so an already-pruned or other model is refused) and to the
calibration settings of the config (``num_samples``, ``seq_len``, ``batch_size``), and raises a
:class:`~medprune.errors.PruneError` naming the difference. What still needs a pass per
candidate: the layers after the first of Wanda and SparseGPT (they see the pruned layers
before them, :mod:`medprune.prune.sequential`) and, for width with
``structured.plan_search``, the output error of each head/MLP split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from medprune.errors import PruneError
from medprune.prune.allocation import outlier_ratio
from medprune.prune.arch import head_layout, layer_parts
from medprune.prune.wanda import wanda_scores

_META = "dense_calibration.json"
_TENSORS = "dense_calibration.safetensors"
_FORMAT = 1


def model_fingerprint(model: nn.Module) -> dict:
    """What identifies a dense model for its statistics: architecture sizes, dtype and a
    float64 checksum of every decoder linear weight (a pruned or other model differs)."""
    cfg = model.config
    total = 0.0
    dtype = None
    for layer in model.model.layers:
        for m in layer.modules():
            if isinstance(m, nn.Linear):
                total += float(m.weight.detach().double().abs().sum())
                dtype = str(m.weight.dtype).removeprefix("torch.")
    return {
        "model_type": getattr(cfg, "model_type", None),
        "num_hidden_layers": len(model.model.layers),
        "hidden_size": cfg.hidden_size,
        "intermediate_size": getattr(cfg, "intermediate_size", None),
        "num_attention_heads": getattr(cfg, "num_attention_heads", None),
        "num_key_value_heads": getattr(cfg, "num_key_value_heads", None),
        "dtype": dtype,
        "weight_checksum": total,
    }


@dataclass
class DenseCalibration:
    """Candidate-independent calibration statistics of one dense model (see the module doc).

    ``sq_sums[i][name]``: sum over calibration tokens of ``x_j^2`` of the input of linear
    ``name`` (relative to decoder layer ``i``), float32. ``block_influence[i]``: mean over
    tokens of ``1 - cos(input, output)`` of layer ``i``. ``calibration``: the
    ``num_samples``/``seq_len``/``batch_size`` used; ``model``: :func:`model_fingerprint`.
    """

    token_ids: torch.Tensor
    sq_sums: list[dict[str, torch.Tensor]]
    block_influence: list[float]
    calibration: dict
    model: dict
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ checks

    def check_matches(self, model: nn.Module, calibration) -> None:
        """Raise a :class:`PruneError` unless these statistics were collected on ``model``
        (as it is now: dense) with the calibration settings ``calibration``."""
        want = {k: getattr(calibration, k) for k in ("num_samples", "seq_len", "batch_size")}
        for key, value in want.items():
            if self.calibration.get(key) != value:
                raise PruneError(
                    f"prune.calibration.{key}={value}, but the dense calibration statistics were "
                    f"collected with {key}={self.calibration.get(key)}; collect them again with "
                    "these settings"
                )
        have = model_fingerprint(model)
        for key, value in have.items():
            if key != "weight_checksum" and self.model.get(key) != value:
                raise PruneError(
                    f"the dense calibration statistics belong to a model with {key}="
                    f"{self.model.get(key)!r}, this model has {key}={value!r}"
                )
        if have["weight_checksum"] != self.model.get("weight_checksum"):
            raise PruneError(
                "the dense calibration statistics were collected on other weights (checksum "
                f"{self.model.get('weight_checksum')!r}, this model {have['weight_checksum']!r}): "
                "give prune_model a fresh copy of the dense model they were collected on"
            )

    # ------------------------------------------------------------------ derived statistics

    def owl_outlier_ratios(self, model: nn.Module, linears_of, threshold: float) -> list[float]:
        """OWL's outlier ratio of every layer: the share of Wanda scores ``|W| ||X_j||`` of
        its ``linears_of(index, layer)`` above ``threshold`` x their mean (dense weights)."""
        ratios = []
        for index, layer in enumerate(model.model.layers):
            scores = [
                wanda_scores(lin.weight, self.sq_sums[index][name].sqrt())
                for name, lin in linears_of(index, layer).items()
            ]
            ratios.append(outlier_ratio(scores, threshold))
        return ratios

    def width_energies(
        self, model: nn.Module
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Per-layer head energies (``o_proj`` input energy summed per head), MLP-channel
        energies (``down_proj`` input) and the hidden-channel energy summed over layers
        (inputs of the attention and MLP input projections), as width pruning ranks them."""
        layout = head_layout(model.config)
        heads, channels = [], []
        hidden = torch.zeros(model.config.hidden_size, dtype=torch.float64)
        for index, layer in enumerate(model.model.layers):
            parts = layer_parts(layer)
            names = {id(m): n for n, m in layer.named_modules()}
            sq = self.sq_sums[index]
            heads.append(sq[names[id(parts.o)]].reshape(layout.num_heads, layout.head_dim).sum(1))
            channels.append(sq[names[id(parts.down)]])
            for m in (parts.qkv or parts.q, parts.gate_up or parts.gate):
                hidden.add_(sq[names[id(m)]].double())
        return heads, channels, hidden

    # ------------------------------------------------------------------ files

    def save(self, directory: str | Path) -> Path:
        """Write ``dense_calibration.json`` and ``dense_calibration.safetensors`` into
        ``directory`` (created if needed); returns the directory."""
        from safetensors.torch import save_file

        from medprune.io.atomic import atomic_write_json

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"token_ids": self.token_ids.contiguous()}
        names = []
        for index, sq in enumerate(self.sq_sums):
            names.append(list(sq))
            for name, t in sq.items():
                # q/k/v (gate/up) share one tensor; each is stored on its own
                tensors[f"sq_sums.{index}.{name}"] = t.detach().float().cpu().clone()
        save_file(tensors, str(out / _TENSORS))
        atomic_write_json(
            out / _META,
            {
                "format": _FORMAT,
                "calibration": self.calibration,
                "model": self.model,
                "block_influence": self.block_influence,
                "linears": names,
                "extra": self.extra,
            },
        )
        return out

    @classmethod
    def load(cls, directory: str | Path) -> DenseCalibration:
        """Read what :meth:`save` wrote; a missing or foreign file is a :class:`PruneError`."""
        from safetensors.torch import load_file

        d = Path(directory)
        meta_path, tensor_path = d / _META, d / _TENSORS
        for p in (meta_path, tensor_path):
            if not p.is_file():
                raise PruneError(f"dense calibration statistics: {p} not found")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT:
            raise PruneError(f"{meta_path}: format {meta.get('format')!r}, expected {_FORMAT}")
        tensors = load_file(str(tensor_path))
        try:
            sq_sums = [
                {name: tensors[f"sq_sums.{index}.{name}"] for name in names}
                for index, names in enumerate(meta["linears"])
            ]
            token_ids = tensors["token_ids"]
        except KeyError as exc:
            raise PruneError(f"{tensor_path}: tensor {exc} missing") from None
        return cls(
            token_ids=token_ids,
            sq_sums=sq_sums,
            block_influence=list(meta["block_influence"]),
            calibration=meta["calibration"],
            model=meta["model"],
            extra=meta.get("extra", {}),
        )
