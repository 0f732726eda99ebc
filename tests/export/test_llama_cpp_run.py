"""Every family's exported GGUF run in llama.cpp itself, compared with PyTorch on the same
token ids. Needs llama.cpp built (``make llama-cpp``); skipped otherwise.

How: ``llama-perplexity --kl-divergence-base FILE`` writes the token ids it evaluated (its own
tokenization of the text) and the log-probabilities of every scored position (the second half
of each ``N_CTX``-token chunk, BOS first), which :func:`read_logits_file` reads back; PyTorch
runs the same ids. The tiny models have ``N_CTX`` (64) > Gemma's sliding window (16), so the
sliding layers are exercised too.

Tolerances (:data:`TOLERANCE`) are on log-probabilities, max over every scored position and
every vocabulary entry within 16 nats of the top one (llama.cpp stores those, to 1.3e-4): f16
rounds each weight and the f16 KV cache to 11 significant bits; q8_0 stores weights as 8-bit
blocks of 32. Argmax: f16 and q8_0 must agree on every position where PyTorch's top two
log-probabilities are further apart than the tolerance (nearer ties are within rounding), and
f16 on at least 99% of all positions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medprune.export.gguf import read_gguf_metadata, write_gguf
from medprune.export.llama_cpp import LlamaCpp
from medprune.export.llama_cpp_tools import REPACK, read_logits_file, run_perplexity

from tests.helpers.families import FAMILIES, save_family, sentencepiece_model
from tests.helpers.fixture_data import TEXTS
from tests.helpers.variants import CALIB, CLINICAL_TEXT

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP = LlamaCpp(
    Path(os.environ.get("MEDPRUNE_LLAMA_CPP") or REPO / ".cache/medprune/llama.cpp")
)
N_CTX = 64
CHUNKS = 4
TOLERANCE = {"f16": 0.02, "q8_0": 0.15}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not LLAMA_CPP.is_built(),
        reason=f"llama.cpp is not built in {LLAMA_CPP.root} (make llama-cpp)",
    ),
]


@pytest.fixture(scope="module")
def sp_model() -> bytes:
    return sentencepiece_model()


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "clinical.txt"
    path.write_text(" ".join([CLINICAL_TEXT, *TEXTS, *CALIB] * 2))
    return path


def _reference(model, tokens: np.ndarray, bos: int | None, first: int) -> np.ndarray:
    ids = torch.tensor(tokens, dtype=torch.long)
    if bos is not None:
        ids[:, 0] = bos  # llama-perplexity puts BOS first in every chunk
    with torch.no_grad():
        logits = model(ids).logits[:, first : ids.shape[1] - 1].double()
    return torch.log_softmax(logits, -1).numpy()


#: Phi-3 is exported by the same converter but not run here: llama.cpp's phi3 vocabulary
#: loader needs Phi-3's own special tokens, which the tokenizer trained here lacks.
RUN_FAMILIES = [f for f in FAMILIES if f != "phi3"]
CASES = [(family, kind) for family in RUN_FAMILIES for kind in ("dense", "width")] + [
    # depth pruning breaks Gemma's sliding/full layer pattern: the export writes it per layer
    ("gemma2", "depth"),
    ("gemma3_text", "depth"),
]


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_llama_cpp_logits_match_pytorch(family, kind, tmp_path, sp_model, text_file) -> None:
    from transformers import AutoModelForCausalLM

    model_dir = save_family(tmp_path, family, kind, sp_model)
    result = write_gguf(
        model_dir,
        tmp_path / "gguf",
        outtypes=("f16", "q8_0"),
        writer="llama.cpp",
        llama_cpp_root=LLAMA_CPP.root,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    for outtype, path in result.files.items():
        md = read_gguf_metadata(path)
        arch = md["general.architecture"]
        assert md[f"{arch}.block_count"] == model.config.num_hidden_layers
        assert md[f"{arch}.attention.head_count"] == model.config.num_attention_heads
        bos = md.get("tokenizer.ggml.bos_token_id")
        add_bos = md.get("tokenizer.ggml.add_bos_token", True)
        logits_file = tmp_path / f"{outtype}.logits"
        run_perplexity(
            LLAMA_CPP,
            path,
            text_file,
            n_ctx=N_CTX,
            chunks=CHUNKS,
            logits_file=logits_file,
            repack=REPACK[outtype],
        )
        got = read_logits_file(logits_file)
        assert got.tokens.shape == (CHUNKS, N_CTX) and got.n_vocab == model.config.vocab_size
        ref = _reference(model, got.tokens, bos if add_bos else None, got.first)
        clipped = np.maximum(ref, got.floor[..., None])  # what llama.cpp can store
        diff = float(np.abs(clipped - got.log_probs).max())
        same = ref.argmax(-1) == got.log_probs.argmax(-1)
        top2 = np.sort(ref, -1)[..., -2:]
        clear = (top2[..., 1] - top2[..., 0]) > TOLERANCE[outtype]
        print(
            f"{family} {kind} {outtype}: max |dlogp| {diff:.4f}, argmax agreement "
            f"{same.mean():.3f} over {same.size} positions ({clear.sum()} clear)"
        )
        assert diff < TOLERANCE[outtype], f"{family} {kind} {outtype}: {diff}"
        assert same[clear].all()
        if outtype == "f16":
            assert same.mean() >= 0.99


def test_qwen2_heads_pruned_without_hidden_channels_is_refused(tmp_path, sp_model) -> None:
    """llama.cpp's qwen2 graph sizes q/o as hidden x hidden: 2 heads x 16 = 32 != 48."""
    from medprune.errors import ExportError
    from medprune.export.gguf import write_gguf as write

    from tests.helpers.families import WIDTH_HIDDEN, build_family, prune_width

    model = prune_width(build_family("qwen2"), "qwen2", WIDTH_HIDDEN)
    model_dir = tmp_path / "qwen2-width"
    model.save_pretrained(model_dir)
    (model_dir / "tokenizer.model").write_bytes(sp_model)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"2 x 16 = 32 is not hidden_size 48: llama.cpp's qwen2"):
        write(model_dir, out, writer="llama.cpp", llama_cpp_root=LLAMA_CPP.root)
    assert not out.exists()
