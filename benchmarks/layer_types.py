"""How wrong calibration is when every decoder layer gets layer 0's attention mask and
rotary embedding (medprune before the fix) versus its own (now), on tiny random models that
mix sliding-window (8 tokens) and full attention, with 64-token calibration sequences::

    .venv/bin/python benchmarks/layer_types.py

Prints, per family: the largest layer-by-layer output error against the model's real
forward (max |error| / max |activation|, layers 1..n-2) both ways, and how many Wanda
(50%) mask entries differ between the two.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the tests' tiny models (tests.helpers)

from medprune.prune.apply import prunable_linears  # noqa: E402
from medprune.prune.calibration import (  # noqa: E402
    LayerInputs,
    calibration_token_ids,
    capture_layer_inputs,
    run_layer,
)
from medprune.prune.engine import prune_model  # noqa: E402

from tests.helpers.tiny import byte_tokenizer  # noqa: E402
from tests.helpers.tiny_families import CALIB_TEXTS, SLIDING, small_prune_config, tiny_family  # noqa: E402


def _layer0_everywhere(self, index):  # what the engine did before: layer 0's kwargs for all
    return LayerInputs(self.hidden, self.layer_kwargs[0], self.layer_kwargs)


def worst_layer_error(model, ids) -> float:
    with torch.no_grad():
        real = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    inputs = capture_layer_inputs(model, ids, 2, torch.device("cpu"))
    worst = 0.0
    for i in range(len(model.model.layers) - 1):  # the last hidden state is after the norm
        inputs = inputs.for_layer(i)
        inputs.hidden = run_layer(model.model.layers[i], inputs)
        got = torch.cat(inputs.hidden)
        worst = max(worst, float((got - real[i + 1]).abs().max() / real[i + 1].abs().max()))
    return worst


def wanda_mask_difference(model) -> tuple[int, int]:
    cfg = small_prune_config(method="wanda", sparsity=0.5)
    own = copy.deepcopy(model)
    prune_model(own, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    saved, LayerInputs.for_layer = LayerInputs.for_layer, _layer0_everywhere
    try:
        first = copy.deepcopy(model)
        prune_model(first, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS)
    finally:
        LayerInputs.for_layer = saved
    a, b = prunable_linears(own.model.layers, ()), prunable_linears(first.model.layers, ())
    diff = sum(int(((a[n].weight == 0) != (b[n].weight == 0)).sum()) for n in a)
    return diff, sum(a[n].weight.numel() for n in a)


def main() -> int:
    torch.set_num_threads(1)
    ids = calibration_token_ids(byte_tokenizer(), CALIB_TEXTS, 4, 64)
    for family in ("gemma2", "gemma3_text", "qwen2", "qwen3"):
        model = tiny_family(family, num_hidden_layers=4, **SLIDING[family])
        own = worst_layer_error(model, ids)
        saved, LayerInputs.for_layer = LayerInputs.for_layer, _layer0_everywhere
        try:
            before = worst_layer_error(model, ids)
        finally:
            LayerInputs.for_layer = saved
        diff, total = wanda_mask_difference(model)
        print(
            f"{family:12s} layer output error: layer 0's mask {before:.3f}, own mask {own:.3g}; "
            f"Wanda 50% mask entries that differ: {diff} of {total}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
