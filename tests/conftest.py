"""Shared fixtures: tiny random models built from a config, saved as real HF directories;
loopback GCP fakes (Cloud Storage emulator, fake Vertex AI) from tests/fakes/gcp_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest_plugins = [
    "tests.fakes.gcp_fixtures",
    "tests.fakes.fuse_fixtures",
    "tests.helpers.real_data",  # the real default model and data, built once per session
]

TINY_VOCAB = 260  # 256 byte symbols + <s>, </s>, <pad>, <unk>

#: Shape of every tiny test model (any family); ids match byte_tokenizer's specials.
TINY_CONFIG = dict(
    vocab_size=TINY_VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=256,
    eos_token_id=257,
    pad_token_id=258,
)


def byte_tokenizer():
    """A real Hugging Face fast tokenizer over bytes (BPE without merges), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for special in ("<s>", "</s>", "<pad>", "<unk>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def tiny_llama(seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = {**TINY_CONFIG, "tie_word_embeddings": False, **overrides}
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


def save_tiny_model(path: Path, seed: int = 0, **overrides) -> Path:
    from medprune.load.model import save_model

    save_model(tiny_llama(seed, **overrides), byte_tokenizer(), path)
    return path


@pytest.fixture(autouse=True)
def print_restored():
    """kfp.local swaps builtins.print while it runs tasks; a test must not leave another test
    with an indenting print (the product guards its own runs: run_log.kfp_print_restored)."""
    import builtins

    before = builtins.print
    yield
    builtins.print = before


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one intra-op thread, and tests do not fight the other
    processes of the suite (kfp.local subprocesses, servers) for the machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_model():
    return tiny_llama()


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    return save_tiny_model(tmp_path / "tiny-llama")


TEXTS = [
    "Hypertension is a persistently elevated arterial blood pressure.",
    "Tachycardia is a heart rate above one hundred beats per minute.",
    "Pneumonia is an infection that inflames the air sacs of the lungs.",
    "Anemia is a decrease in the total amount of red blood cells or hemoglobin.",
    "Diabetes mellitus is a group of metabolic disorders with high blood sugar.",
    "Bradycardia is a resting heart rate under sixty beats per minute.",
]


def write_fixture_data(root: Path) -> dict[str, Path]:
    """Small clinical-style JSONL files in the formats the stages read."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    text = root / "text.jsonl"
    text.write_text(
        "".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS * 3))
    )
    terms = ["hypertension", "tachycardia", "pneumonia", "anemia"]
    mcq = root / "mcq.jsonl"
    lines = []
    for i, t in enumerate(terms * 2):
        lines.append(
            {
                "id": f"q{i}",
                "question": f"Which term matches this definition: {TEXTS[i % 4]}\nAnswer:",
                "options": terms,
                "answer": terms.index(t),
                "category": "cardio" if t in ("hypertension", "tachycardia") else "other",
            }
        )
    mcq.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return {"text": text, "mcq": mcq}


def write_run_config(root: Path, model_dir: Path, **overrides) -> Path:
    """A run config YAML for the tiny model and fixture data; ``overrides`` are merged
    section by section (``gate={"min_accuracy": 1.1}``)."""
    import yaml

    data = write_fixture_data(root / "data")
    cfg = {
        "run_name": "test-run",
        "output_dir": str(root / "runs"),
        "model": {"source": str(model_dir), "name": "tiny-llama"},
        "prune": {"method": "magnitude", "sparsity": 0.5},
        "recover": {
            "data": str(data["text"]),
            "steps": 2,
            "seq_len": 32,
            "batch_size": 2,
            "lr": 1e-4,
        },
        "evaluate": {
            "mcq": str(data["mcq"]),
            "perplexity": str(data["text"]),
            "batch_size": 8,
            "seq_len": 128,
        },
        "gate": {"min_accuracy": 0.0},
        "registry": {"local": {"root": str(root / "registry")}, "aliases": ["candidate"]},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
