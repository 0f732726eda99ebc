"""Tiny random models of every supported family, and calibration texts."""

from __future__ import annotations

import torch

from tests.helpers.tiny import TINY_CONFIG

TINY = TINY_CONFIG

#: Test families: config.model_type values, and ``llama3`` (a Llama 3.2-style config: llama3
#: rope scaling, tied embeddings).
FAMILIES = ("llama", "mistral", "qwen2", "gemma", "phi3", "gemma3_text", "qwen3", "llama3")

#: Every family the engine supports (``FAMILIES`` leaves out those covered by their own tests).
ALL_FAMILIES = (*FAMILIES, "gemma2")

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}

#: Settings that give each family a sliding window (8 tokens, far below the calibration
#: length) where it has one; Qwen2 and Gemma 2 then mix sliding-window and full layers.
SLIDING = {
    "llama": {},
    "gemma": {},
    "mistral": {"sliding_window": 8},
    "phi3": {"sliding_window": 8},
    "qwen2": {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
    "gemma2": {"sliding_window": 8},
    "gemma3_text": {"sliding_window": 8},
    "qwen3": {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
    "llama3": {},
}


def tiny_family(family: str, seed: int = 0, **overrides):
    import transformers as tf

    classes = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, {"tie_word_embeddings": False}),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, {}),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, {}),
        "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, {"head_dim": 16}),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, {"head_dim": 16}),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, {}),
        # Gemma 3 text (MedGemma's language model): q/k norms, sliding and full layers with
        # their own rotary bases, tied and scaled embeddings.
        "gemma3_text": (
            tf.Gemma3TextConfig,
            tf.Gemma3ForCausalLM,
            {"head_dim": 16, "query_pre_attn_scalar": 16},
        ),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, {"head_dim": 16}),
        "llama3": (
            tf.LlamaConfig,
            tf.LlamaForCausalLM,
            {"tie_word_embeddings": True, "rope_scaling": LLAMA3_ROPE},
        ),
    }
    config_cls, model_cls, extra = classes[family]
    cfg = {**TINY, **extra, **overrides}
    if family == "gemma3_text" and "layer_types" not in cfg:  # alternate, full attention last
        n = cfg["num_hidden_layers"]
        cfg["layer_types"] = [
            "sliding_attention" if (n - i) % 2 == 0 else "full_attention" for i in range(n)
        ]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**cfg)).eval()
    # Random init leaves biases at zero; make them matter (Qwen2 q/k/v biases).
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.normal_(0, 0.5)
            if "norm" in type(m).__name__.lower() and getattr(m, "weight", None) is not None:
                m.weight.add_(torch.rand_like(m.weight) * 0.5)
    return model


CLINICAL = [
    "A 64-year-old man presented with chest pain radiating to the left arm; troponin was elevated "
    "and the ECG showed ST elevation in the anterior leads. He was taken for PCI.",
    "The patient, a 30-year-old woman with asthma, reported wheeze and shortness of breath after "
    "a viral infection. Peak flow was 60% of predicted; she was given salbutamol and prednisolone.",
    "Fever, dysuria and flank pain for three days. Urine culture grew E. coli. Started on "
    "ceftriaxone, then switched to oral antibiotics once afebrile for 48 hours.",
    "Known type 2 diabetes on metformin; HbA1c 8.9%. Counselled on diet, started a GLP-1 agonist, "
    "and booked retinal screening and a foot examination.",
]

CALIB_TEXTS = CLINICAL * 6


def small_prune_config(**kwargs):
    """A PruneConfig with a calibration set small enough for tiny models."""
    from medprune.config import PruneConfig

    kwargs.setdefault("calibration", {"num_samples": 8, "seq_len": 64, "batch_size": 4})
    return PruneConfig(**kwargs)
