"""The layer-by-layer pass reproduces the model's own forward, layer for layer.

Calibration sequences (64 tokens) are longer than the sliding window (8), so a layer given
another layer type's attention mask or rotary embedding would show up as a mismatch.
"""

import copy

import pytest
import torch

from medprune.prune.calibration import calibration_token_ids, capture_layer_inputs, run_layer
from medprune.prune.depth import block_influence
from medprune.prune.engine import prune_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import (
    ALL_FAMILIES,
    CALIB_TEXTS,
    SLIDING,
    small_prune_config,
    tiny_family,
)

LAYERS = 4


def _model(family):
    return tiny_family(family, num_hidden_layers=LAYERS, **SLIDING[family])


def _real_hidden_states(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_layer_by_layer_equals_real_forward(family):
    model = _model(family)
    ids = calibration_token_ids(byte_tokenizer(), CALIB_TEXTS, 4, 64)
    real = _real_hidden_states(model, ids)  # embeddings, then each layer's output (last normed)
    inputs = capture_layer_inputs(model, ids, 2, torch.device("cpu"))
    assert len(inputs.layer_kwargs) == LAYERS and all(len(k) == 2 for k in inputs.layer_kwargs)
    torch.testing.assert_close(torch.cat(inputs.hidden), real[0], rtol=0, atol=0)
    for index in range(LAYERS - 1):
        inputs = inputs.for_layer(index)
        out = run_layer(model.model.layers[index], inputs)
        torch.testing.assert_close(torch.cat(out), real[index + 1], rtol=1e-5, atol=1e-5)
        inputs.hidden = out
    # The recorders are gone: the model runs as before.
    torch.testing.assert_close(_real_hidden_states(model, ids)[-1], real[-1], rtol=0, atol=0)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_engine_block_influence_uses_each_layers_own_mask(family):
    """Depth pruning's block influence, measured by the engine layer by layer, equals the one
    computed from the real forward's hidden states."""
    model = _model(family)
    cfg = small_prune_config(method="depth", sparsity=0.25)
    ids = calibration_token_ids(byte_tokenizer(), CALIB_TEXTS, 8, 64)
    real = _real_hidden_states(copy.deepcopy(model), ids)
    influence = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS).report[
        "block_influence"
    ]
    for index in range(LAYERS - 1):
        total, count = block_influence(real[index], real[index + 1])
        assert influence[index] == pytest.approx(total / count, rel=1e-4, abs=1e-6), index
