"""Calibration statistics of the inputs of linear layers.

Linears that read the same tensor (q/k/v, gate/up) form one :class:`InputStats`, so the
SparseGPT Hessian ``X^T X`` is computed once per distinct input, not once per linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from medprune.errors import PruneError
from medprune.prune.calibration import LayerInputs


@dataclass
class InputStats:
    """Running statistics of the input ``X`` (tokens x features) of some linears."""

    members: list[str]
    features: int
    hessian_wanted: bool = False
    tokens: int = 0
    sq_sum: torch.Tensor | None = None  # sum over tokens of x_j^2, per feature
    _upper: torch.Tensor | None = field(default=None, repr=False)  # upper block triangle of X^T X
    _hessian: torch.Tensor | None = field(default=None, repr=False)

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        sq = x.pow(2).sum(0)
        self.sq_sum = sq if self.sq_sum is None else self.sq_sum + sq
        if self.hessian_wanted:
            if self._upper is None:
                self._upper = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
            add_gram_upper(self._upper, x)
            self._hessian = None
        self.tokens += x.shape[0]

    @property
    def hessian(self) -> torch.Tensor | None:
        """``X^T X`` summed over all tokens added (float32, exactly symmetric)."""
        if self._hessian is None and self._upper is not None:
            self._hessian = symmetric_from_upper(self._upper, gram_blocks(self.features))
        return self._hessian

    @property
    def col_norm(self) -> torch.Tensor:
        """L2 norm of each input feature over all calibration tokens (Wanda's ||X_j||)."""
        if self.sq_sum is None:
            raise PruneError(f"no calibration inputs were recorded for {', '.join(self.members)}")
        return self.sq_sum.sqrt()


def gram_blocks(features: int, count: int | None = None) -> list[tuple[int, int]]:
    """Column ranges that split ``features`` into ``count`` nearly equal blocks (by default
    one per ~256 features, at least 3 and at most 16)."""
    if count is None:
        count = min(16, max(3, features // 256))
    count = max(1, min(count, features))
    return [(i * features // count, (i + 1) * features // count) for i in range(count)]


def add_gram_upper(upper: torch.Tensor, x: torch.Tensor, count: int | None = None) -> None:
    """Add the blocks on and above the diagonal of ``x^T x`` to ``upper`` (in place).

    ``X^T X`` is symmetric, so with ``c`` column blocks ``c(c+1)/2`` of the ``c^2`` block
    products are computed (2/3 of the multiply-adds of one ``x.T @ x`` with 3 blocks, 7/12
    with 6); :func:`symmetric_from_upper` mirrors them. Blocks of ~256 columns keep the
    products large: on one CPU thread 6 blocks for 1536 features took 20% less time than 3.
    """
    blocks = gram_blocks(x.shape[1], count)
    for a0, a1 in blocks:
        upper[a0:a1, a0:].addmm_(x[:, a0:a1].T, x[:, a0:])


def symmetric_from_upper(upper: torch.Tensor, blocks: list[tuple[int, int]]) -> torch.Tensor:
    """The full symmetric matrix whose on- and above-diagonal blocks ``upper`` holds."""
    full = upper.clone()
    for i, (a0, a1) in enumerate(blocks):
        for b0, b1 in blocks[i + 1 :]:
            full[b0:b1, a0:a1] = upper[a0:a1, b0:b1].T
        # Diagonal blocks are products x_a^T x_a, symmetric up to rounding: make them exact.
        diag = full[a0:a1, a0:a1]
        full[a0:a1, a0:a1] = torch.triu(diag) + torch.triu(diag, 1).T
    return full


@dataclass
class LayerStats:
    by_linear: dict[str, InputStats] = field(default_factory=dict)

    @property
    def groups(self) -> list[InputStats]:
        seen: dict[int, InputStats] = {}
        for s in self.by_linear.values():
            seen.setdefault(id(s), s)
        return list(seen.values())


@torch.no_grad()
def collect_input_stats(
    layer: nn.Module,
    linears: dict[str, nn.Linear],
    inputs: LayerInputs,
    *,
    hessian: bool,
    outputs: Literal["return", "discard", "in_place"] = "return",
) -> tuple[LayerStats, list[torch.Tensor]]:
    """Run ``layer`` on ``inputs`` and gather input statistics of ``linears`` (names relative
    to ``layer``). Returns the stats and the layer's outputs: a new list (``"return"``), an
    empty list (``"discard"``: the layer will be run again after it is pruned), or
    ``inputs.hidden`` with each batch's output written over its input (``"in_place"``:
    the activations are held once)."""
    from medprune.prune.calibration import layer_output

    if outputs not in ("return", "discard", "in_place"):  # before any hook is registered
        raise ValueError(f"outputs={outputs!r}: expected 'return', 'discard' or 'in_place'")
    stats = LayerStats()
    # Tensors seen in the current batch are kept alive, so that an address or id is never
    # reused by a later tensor of the same forward pass (which would merge unrelated groups).
    seen_inputs: dict[int, tuple[InputStats, torch.Tensor]] = {}

    def make_hook(name: str):
        def hook(module, args):
            x = args[0]
            # Linears fed the very same tensor in the same batch share one statistics object.
            hit = seen_inputs.get(id(x))
            if hit is not None:
                group = hit[0]
            else:
                if name in stats.by_linear:
                    group = stats.by_linear[name]
                else:
                    group = InputStats(members=[], features=x.shape[-1], hessian_wanted=hessian)
                seen_inputs[id(x)] = (group, x)
                group.add(x)
            if name not in stats.by_linear:
                stats.by_linear[name] = group
                group.members.append(name)

        return hook

    handles = [lin.register_forward_pre_hook(make_hook(n)) for n, lin in linears.items()]
    result: list[torch.Tensor] = []
    try:
        for i, kw in enumerate(inputs.kwargs):
            seen_inputs.clear()
            out = layer_output(layer(inputs.hidden[i], **kw))
            if outputs == "return":
                result.append(out)
            elif outputs == "in_place":
                inputs.hidden[i] = out
            del out
        seen_inputs.clear()
    finally:
        for handle in handles:
            handle.remove()
    return stats, (inputs.hidden if outputs == "in_place" else result)
