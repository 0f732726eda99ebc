"""Tiny random Llama models built from a config, and a byte-level Hugging Face tokenizer built
offline: what most unit tests run on."""

from __future__ import annotations

from pathlib import Path

import torch

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
