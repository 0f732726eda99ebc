"""One calibration pass per decoder layer: each sub-layer is computed once, in order, with
the weights before it already pruned (the order of SparseGPT's ``true_sequential``).

A decoder layer reads each distinct input with one or more linears (``q/k/v_proj`` share
the normed hidden states, ``o_proj`` reads the attention output, ``gate/up_proj`` the normed
residual, ``down_proj`` the gated product). The statistics of an input are complete only
when every calibration batch has produced it, but a layer runs one batch at a time. So each
batch runs the layer in its own worker thread, and the workers take turns: exactly one
thread runs at any moment, batch 0 first, and a batch stops at the first linear that reads
an input it has not seen before. When every batch has stopped there, the statistics of that
input (summed over the batches in batch order, as a dense pass would) are complete; each
linear that reads it is pruned by ``prune_linear`` just before its first use, and the
batches go on to the next new input. The layer's outputs (made with the pruned weights) are
the next layer's inputs, so the layer is computed exactly once.

The turn-taking makes the result deterministic and independent of thread scheduling, and
keeps the work on one thread at a time (each worker uses the torch intra-op threads as the
caller would). Memory: every batch holds its intermediate tensors while it waits, roughly
the activations of one sub-layer for the whole calibration set (at ``down_proj``: the MLP's
gated product, the normed input and the residual of every calibration token), and each
worker thread allocates from its own heap arena. On SmolLM2-135M with 64 x 256 calibration
tokens that is most of the model's own size again; on a 7B model with the same calibration
about 6% of it. ``prune.calibration.passes: 2`` (the engine's two-pass path, not this
module) holds only the hidden states, for one more forward per layer.

Compared with two passes (statistics from the dense layer, then a second forward with the
pruned layer to make the next layer's inputs), the statistics of ``o_proj``, ``gate/up_proj``
and ``down_proj`` now see the already-pruned sub-layers before them, which is what they
will see at inference; the statistics of the first linears of each layer are unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn

from medprune.errors import PruneError
from medprune.prune.calibration import LayerInputs, layer_output
from medprune.prune.stats import InputStats, LayerStats

#: ``prune_linear(name, linear, stats)`` is called once per linear, right before its first
#: use, when ``stats`` (its input over all calibration batches) is complete.
PruneLinear = Callable[[str, nn.Linear, InputStats], None]


class _Abort(BaseException):
    """Unwinds a waiting worker when another one failed (never escapes the pass)."""


class _Worker:
    """One calibration batch running through the layer in its own thread."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.seen: dict[int, tuple[InputStats, torch.Tensor]] = {}  # id(input) -> group
        self.new_inputs = 0  # distinct inputs met so far
        self.done = False
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None


class _Turns:
    """Hands the single running turn between the caller (``None``) and the workers."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.turn: int | None = None
        self.abort = False

    def run_worker(self, index: int) -> None:
        """Give the turn to worker ``index`` and wait until it hands it back."""
        with self.cond:
            self.turn = index
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.turn is None)

    def wait_for_turn(self, index: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == index)
        if self.abort:
            raise _Abort

    def hand_back(self) -> None:
        with self.cond:
            self.turn = None
            self.cond.notify_all()


@torch.no_grad()
def prune_layer_sequentially(
    layer: nn.Module,
    linears: dict[str, nn.Linear],
    inputs: LayerInputs,
    prune_linear: PruneLinear,
    *,
    hessian: bool,
) -> LayerStats:
    """Run ``layer`` once over every batch of ``inputs``, pruning each of ``linears`` (names
    relative to ``layer``) with ``prune_linear`` as soon as its input statistics are complete.

    Each batch's output is written over its input in ``inputs.hidden`` (the activations are
    held once). Linears that read the very same tensor share one :class:`InputStats`
    (``hessian``: also gather ``X^T X``). Returns the statistics, by linear name.
    """
    names = {id(m): n for n, m in linears.items()}
    stats = LayerStats()
    groups: list[InputStats] = []
    first_reader: list[str] = []  # the linear that met each group's input first
    pruned: set[str] = set()
    turns = _Turns()
    local = threading.local()

    def hook(module, args):
        worker: _Worker = local.worker
        name = names[id(module)]
        x = args[0]
        hit = worker.seen.get(id(x))
        if hit is None:
            k = worker.new_inputs
            worker.new_inputs += 1
            if k == len(groups):
                groups.append(InputStats(members=[], features=x.shape[-1], hessian_wanted=hessian))
                first_reader.append(name)
            if first_reader[k] != name:
                raise PruneError(
                    f"calibration batch {worker.index} of {type(layer).__name__} read its input "
                    f"#{k} first with {name}, batch 0 with {first_reader[k]}: the layer does not "
                    "run the same linears in the same order for every batch"
                )
            group = groups[k]
            # The tensor stays referenced so that its id is not reused within this batch.
            worker.seen[id(x)] = (group, x)
            group.add(x)
            turns.hand_back()  # wait until every batch has added this input
            turns.wait_for_turn(worker.index)
        else:
            group = hit[0]
        if name not in stats.by_linear:
            stats.by_linear[name] = group
            group.members.append(name)
        if name not in pruned:
            pruned.add(name)
            prune_linear(name, module, group)

    def work(worker: _Worker, i: int) -> None:
        local.worker = worker
        try:
            turns.wait_for_turn(worker.index)
            with torch.no_grad():  # grad mode is per thread
                out = layer_output(layer(inputs.hidden[i], **inputs.kwargs[i]))
            inputs.hidden[i] = out
        except _Abort:
            pass
        except BaseException as exc:  # re-raised by the caller
            worker.error = exc
        finally:
            worker.done = True
            worker.seen.clear()
            turns.hand_back()

    handles = [lin.register_forward_pre_hook(hook) for lin in linears.values()]
    workers = [_Worker(i) for i in range(len(inputs.hidden))]
    try:
        for i, worker in enumerate(workers):
            worker.thread = threading.Thread(
                target=work, args=(worker, i), name=f"medprune-calibration-{i}", daemon=True
            )
            worker.thread.start()
        running = list(workers)
        while running:
            for worker in running:  # in batch order: statistics are summed in that order
                turns.run_worker(worker.index)
                if worker.error is not None:
                    raise worker.error
            finished = [w for w in running if w.done]
            if finished and len(finished) != len(running):
                raise PruneError(
                    f"calibration batches of {type(layer).__name__} read different numbers of "
                    f"inputs (batches {[w.index for w in finished]} finished first)"
                )
            running = [w for w in running if not w.done]
    finally:
        with turns.cond:  # after an interrupt a worker may still hold the turn
            turns.cond.wait_for(lambda: turns.turn is None)
        turns.abort = True
        for worker in workers:
            if worker.thread is not None and not worker.done:
                turns.run_worker(worker.index)  # it raises _Abort and unwinds
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join()
        for handle in handles:
            handle.remove()
    return stats
