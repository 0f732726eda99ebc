"""Layer-by-layer on an accelerator: only one decoder layer (plus activations) is there."""

import pytest
import torch

from medprune.prune.engine import prune_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config, tiny_family

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "width"])
def test_one_layer_at_a_time_on_cuda(method):
    model = tiny_family(
        "llama",
        num_hidden_layers=8,
        hidden_size=256,
        intermediate_size=1024,
        num_attention_heads=8,
        num_key_value_heads=2,
    )
    layer_bytes = sum(p.numel() * p.element_size() for p in model.model.layers[0].parameters())
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = prune_model(
        model,
        byte_tokenizer(),
        small_prune_config(method=method),
        calib_texts=CALIB_TEXTS,
        device="cuda",
    )
    peak = torch.cuda.max_memory_allocated() - base
    all_layers = layer_bytes * 8
    assert peak < all_layers / 2, (peak, all_layers)
    assert all(p.device.type == "cpu" for p in result.model.parameters())
