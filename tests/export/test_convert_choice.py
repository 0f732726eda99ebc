"""Which models llama.cpp can run as exported (refusals name what llama.cpp lacks) and the
sliding-window layer pattern written after depth pruning: config-level checks, no llama.cpp
needed."""

from __future__ import annotations

import pytest

from medprune.errors import ExportError
from medprune.export.convert import refusal, swa_pattern_fix
from medprune.export.gguf import export_gguf, model_shape

BASE = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    num_hidden_layers=2,
    intermediate_size=128,
    vocab_size=320,
)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "gpt2"}, "architecture 'gpt2'"),
        (
            {"model_type": "mistral", "sliding_window": 16, "max_position_embeddings": 512},
            "llama.cpp runs mistral as its 'llama' architecture, which has no sliding-window",
        ),
        (
            {"model_type": "qwen2", "sliding_window": 16, "use_sliding_window": True},
            "sliding-window attention",
        ),
        (
            {"model_type": "qwen2", "num_attention_heads": 2, "hidden_size": 48},
            "2 x 16 = 32 is not hidden_size 48",
        ),
        ({"model_type": "gemma2", "tie_word_embeddings": False}, "tie_word_embeddings false"),
        (
            {"model_type": "gemma3_text", "query_pre_attn_scalar": 24},
            r"query_pre_attn_scalar 24: llama.cpp scales gemma3 attention by 1/sqrt\(head_dim\)",
        ),
    ],
)
def test_refused_with_what_llama_cpp_lacks(config, message, tmp_path) -> None:
    import re

    full = {**BASE, **config}
    assert re.search(message, refusal(full) or "")
    with pytest.raises(ExportError, match=message):
        model_shape(full)


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "llama", "rope_parameters": {"rope_type": "llama3", "factor": 8.0}},
        {"model_type": "mistral", "sliding_window": None},
        {"model_type": "mistral", "sliding_window": 4096, "max_position_embeddings": 4096},
        {"model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": False},
        {"model_type": "qwen3"},
        {"model_type": "gemma3_text", "query_pre_attn_scalar": 16},
        # the 27B layer count: llama.cpp uses hidden / heads (64 / 4 = 16 here)
        {"model_type": "gemma3_text", "num_hidden_layers": 62, "query_pre_attn_scalar": 16},
        {"model_type": "gemma3", "text_config": {**BASE, "query_pre_attn_scalar": 16}},
    ],
)
def test_accepted(config) -> None:
    assert refusal({**BASE, **config}) is None


def test_writer_refuses_llama3_rope_but_the_family_is_exportable(tmp_path) -> None:
    import json

    model_dir = tmp_path / "m"
    model_dir.mkdir()
    config = {**BASE, "model_type": "llama", "rope_parameters": {"rope_type": "llama3"}}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="rope type 'llama3': medprune's own GGUF writer"):
        export_gguf(model_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_swa_pattern_written_only_when_llama_cpp_default_differs() -> None:
    s, f = "sliding_attention", "full_attention"
    gemma3 = {"model_type": "gemma3_text", "layer_types": [s, s, s, s, s, f, s]}
    assert swa_pattern_fix(gemma3) is None  # period 6, as llama.cpp assumes
    pruned = {"model_type": "gemma3_text", "layer_types": [s, s, s, s, f, s]}
    assert swa_pattern_fix(pruned) == [True, True, True, True, False, True]
    gemma2 = {"model_type": "gemma2", "layer_types": [s, f, s, f]}
    assert swa_pattern_fix(gemma2) is None
    assert swa_pattern_fix({"model_type": "gemma2", "layer_types": [s, f, f, s]}) == [
        True,
        False,
        False,
        True,
    ]
    assert swa_pattern_fix({"model_type": "llama"}) is None
