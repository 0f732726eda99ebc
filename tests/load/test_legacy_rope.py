"""A saved model keeps its rotary settings under transformers 4.x as well as 5.

transformers 5 writes ``rope_parameters`` only; 4.x reads ``rope_theta`` / ``rope_scaling``
(and Gemma 3's ``rope_local_base_freq``) and would fall back to its defaults. ``save_model``
writes both spellings. The 4.x round trip runs when ``MEDPRUNE_TRANSFORMERS4_PYTHON`` names a
Python with transformers 4.x and torch (skipped otherwise).
"""

import json
import os
import subprocess

import pytest
import torch

from medprune.load.model import legacy_rope_keys, load_model, save_model

from tests.helpers.tiny import byte_tokenizer
from tests.helpers.tiny_families import tiny_family

IDS = [[5, 17, 99, 200, 3, 42, 250, 7, 64, 128, 11, 2] * 8]  # 96 tokens: past llama3's 64
FAMILIES = ["llama3", "gemma3_text", "qwen3", "gemma2", "phi3", "mistral"]


def _logits(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS), use_cache=False).logits


def test_legacy_keys_of_llama3_and_gemma3():
    llama3 = {
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    }
    assert legacy_rope_keys(llama3) == {
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }
    gemma3 = {
        "rope_parameters": {
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        }
    }
    assert legacy_rope_keys(gemma3) == {
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    }
    assert legacy_rope_keys({"rope_theta": 1.0, "rope_parameters": {"rope_theta": 2.0}}) == {
        "rope_scaling": None
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_config_has_both_spellings_and_reloads_exactly(family, tmp_path):
    model = tiny_family(family)
    save_model(model, byte_tokenizer(), tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "rope_parameters" in saved and "rope_theta" in saved and "rope_scaling" in saved
    if family == "llama3":
        assert saved["rope_scaling"]["rope_type"] == "llama3" and saved["rope_theta"] == 500000.0
    if family == "gemma3_text":
        assert (saved["rope_theta"], saved["rope_local_base_freq"]) == (1000000.0, 10000.0)
    back, _ = load_model(tmp_path / "m")
    assert back.config.rope_parameters == model.config.rope_parameters
    torch.testing.assert_close(_logits(back), _logits(model), rtol=0, atol=0)


OLD_PYTHON = os.environ.get("MEDPRUNE_TRANSFORMERS4_PYTHON")

_LOAD_4X = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM
assert transformers.__version__.startswith("4."), transformers.__version__
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32).eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor(json.loads(sys.argv[2])), use_cache=False).logits
torch.save(logits, sys.argv[3])
print(transformers.__version__)
"""


@pytest.mark.skipif(not OLD_PYTHON, reason="MEDPRUNE_TRANSFORMERS4_PYTHON not set")
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pruned", [False, True])
def test_transformers4_reads_what_we_write(family, pruned, tmp_path):
    model = tiny_family(family)
    if pruned:  # fewer heads: head_dim no longer hidden_size / heads
        from medprune.prune.engine import prune_model

        from tests.helpers.tiny_families import CALIB_TEXTS, small_prune_config

        cfg = small_prune_config(
            method="width", structured={"num_attention_heads": 2, "intermediate_size": 64}
        )
        model = prune_model(model, byte_tokenizer(), cfg, calib_texts=CALIB_TEXTS).model
    save_model(model, byte_tokenizer(), tmp_path / "m")
    out = tmp_path / "logits.pt"
    run = subprocess.run(
        [OLD_PYTHON, "-c", _LOAD_4X, str(tmp_path / "m"), json.dumps(IDS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    torch.testing.assert_close(torch.load(out), _logits(model), rtol=1e-4, atol=1e-4)
