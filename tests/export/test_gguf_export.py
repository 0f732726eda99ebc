"""GGUF export of dense and pruned models, checked for real: the files load back in
transformers (``gguf_file=``), ``gguf.GGUFReader`` reads the shape metadata, and the logits
on clinical text match the Hugging Face model within a stated tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medprune.config import ServeConfig
from medprune.errors import ExportError
from medprune.export import gguf as gguf_mod
from medprune.export.bundle import export_for_ollama
from medprune.export.gguf import permute_rotary_rows, read_gguf_metadata
from medprune.load.model import save_model

from tests.helpers.variants import (
    CLINICAL_TEXT,
    bpe_tokenizer,
    build_variant,
    chat_tokenizer,
    variant_llama,
)

#: max |logit difference| allowed vs the float32 HF model (the tiny models' logits are within
#: +-0.7): f16 rounds each weight to 11 significant bits, q8_0 to 8 bits per block of 32.
TOLERANCE = {"f16": 2e-3, "q8_0": 3e-2}
KINDS = ("dense", "unstructured", "width", "depth")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for kind in KINDS:
        model_dir = save_model(*build_variant(kind), root / kind)
        out[kind] = (model_dir, export_for_ollama(model_dir, root / f"{kind}-gguf", name=kind))
    return out


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("kind", KINDS)
def test_export_loads_back_with_matching_logits(exported, kind) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, result = exported[kind]
    config = json.loads((model_dir / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(CLINICAL_TEXT, return_tensors="pt").input_ids
    reference = _logits(AutoModelForCausalLM.from_pretrained(model_dir).eval(), ids)
    assert set(result.gguf) == {"f16", "q8_0"}
    for outtype, path in result.gguf.items():
        md = read_gguf_metadata(path)
        # the shape llama.cpp sizes its graph by is the pruned model's own
        assert md["general.architecture"] == "llama"
        assert md["llama.block_count"] == config["num_hidden_layers"]
        assert md["llama.embedding_length"] == config["hidden_size"]
        assert md["llama.feed_forward_length"] == config["intermediate_size"]
        assert md["llama.attention.head_count"] == config["num_attention_heads"]
        assert md["llama.attention.head_count_kv"] == config["num_key_value_heads"]
        assert md["llama.attention.key_length"] == config["head_dim"]
        assert md["llama.attention.value_length"] == config["head_dim"]
        assert md["llama.rope.dimension_count"] == config["head_dim"]
        assert md["general.file_type"] == {"f16": 1, "q8_0": 7}[outtype]
        assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.merges"] > 0
        weight_type = md["tensors"]["blk.0.ffn_down.weight"][0]  # rows of intermediate_size
        assert weight_type == {"f16": "F16", "q8_0": "Q8_0"}[outtype]
        assert md["tensors"]["blk.0.attn_norm.weight"][0] == "F32"

        loaded = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        ).eval()
        assert loaded.config.head_dim == config["head_dim"]
        assert loaded.config.num_hidden_layers == config["num_hidden_layers"]
        diff = (_logits(loaded, ids) - reference).abs().max().item()
        assert diff <= TOLERANCE[outtype], (kind, outtype, diff)
        # the tokenizer stored in the file encodes the clinical text to the same ids
        back = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        assert back(CLINICAL_TEXT).input_ids == tok(CLINICAL_TEXT).input_ids
        assert back.eos_token == "<|im_end|>"


def test_width_pruned_head_dim_is_not_hidden_over_heads(exported) -> None:
    """The case Ollama's own import gets wrong: head_dim != hidden_size / heads."""
    _model_dir, result = exported["width"]
    md = read_gguf_metadata(result.gguf["f16"])
    heads, hidden = md["llama.attention.head_count"], md["llama.embedding_length"]
    assert hidden // heads != md["llama.attention.key_length"] == 16
    q_shape = md["tensors"]["blk.0.attn_q.weight"][1]
    assert q_shape == [hidden, heads * 16]  # GGUF lists dims innermost first


def test_modelfile_and_manifest(exported) -> None:
    _model_dir, result = exported["dense"]
    text = result.modelfile.read_text()
    assert "FROM ./dense-q8_0.gguf\n" in text
    assert 'PARAMETER stop "<|im_start|>"' in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER num_ctx 512" in text  # the model's max_position_embeddings
    assert "<|im_start|>{{ .Role }}" in text
    assert 'SYSTEM """You are a clinical documentation assistant.' in text
    manifest = json.loads(result.manifest.read_text())
    assert manifest["files"]["q8_0"]["file"] == "dense-q8_0.gguf"
    assert manifest["files"]["q8_0"]["bytes"] == result.gguf["q8_0"].stat().st_size
    assert manifest["shape"]["head_dim"] == 16
    assert sorted(p.name for p in result.gguf["f16"].parent.iterdir()) == [
        "Modelfile",
        "dense-f16.gguf",
        "dense-q8_0.gguf",
        "export.json",
    ]


def test_modelfile_settings_from_config(exported, tmp_path) -> None:
    model_dir, _ = exported["depth"]
    serve = ServeConfig(
        gguf={"outtypes": ["bf16"]},
        ollama={
            "quantization": "bf16",
            "num_ctx": 256,
            "system_prompt": "Summarise the note.",
            "stop": ["###"],
        },
    )
    result = export_for_ollama(model_dir, tmp_path, serve=serve, name="depth")
    assert set(result.gguf) == {"bf16"}
    assert read_gguf_metadata(result.gguf["bf16"])["tensors"]["blk.0.ffn_up.weight"][0] == "BF16"
    text = result.modelfile.read_text()
    assert "FROM ./depth-bf16.gguf" in text and "PARAMETER num_ctx 256" in text
    assert 'SYSTEM """Summarise the note."""' in text and 'PARAMETER stop "###"' in text


def test_permute_matches_llama_cpp_layout() -> None:
    # one head of dim 4: HF rotate-half rows (x0, x1 | y0, y1) -> interleaved (x0, y0, x1, y1)
    w = torch.arange(8.0).reshape(4, 2).numpy()
    assert permute_rotary_rows(w, 1)[:, 0].tolist() == [0.0, 4.0, 2.0, 6.0]


# --- bad input: clear errors, nothing written --------------------------------------------


def test_unsupported_architecture_is_refused_before_writing(tmp_path) -> None:
    import transformers as tf

    from tests.helpers.tiny import TINY_CONFIG

    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    model = tf.PhiForCausalLM(tf.PhiConfig(vocab_size=267, **{k: TINY_CONFIG[k] for k in keys}))
    model_dir = save_model(model, chat_tokenizer(), tmp_path / "phi")
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"architecture 'phi'.*supported: gemma, gemma2, "):
        export_for_ollama(model_dir, out)
    assert not out.exists() or not any(out.iterdir())


def test_no_chat_template_is_refused_before_writing(tmp_path) -> None:
    model_dir = save_model(variant_llama(), bpe_tokenizer(), tmp_path / "plain")
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"has no chat template.*serve.ollama.template"):
        export_for_ollama(model_dir, out)
    assert not out.exists() or not any(out.iterdir())
    # without a Modelfile the GGUF export itself works
    result = export_for_ollama(model_dir, out, modelfile=False)
    assert result.modelfile is None and result.gguf["q8_0"].is_file()


def test_unknown_chat_template_needs_an_explicit_one(tmp_path) -> None:
    tok = bpe_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:"
    )
    model_dir = save_model(variant_llama(), tok, tmp_path / "odd")
    with pytest.raises(ExportError, match=r"not one medprune can translate.*chatml, llama3"):
        export_for_ollama(model_dir, tmp_path / "out")
    serve = ServeConfig(ollama={"template": "{{ .Prompt }}", "stop": ["###"]})
    result = export_for_ollama(model_dir, tmp_path / "out", serve=serve)
    assert 'TEMPLATE """{{ .Prompt }}"""' in result.modelfile.read_text()


def test_failure_midway_leaves_no_file(tmp_path, monkeypatch) -> None:
    model_dir = save_model(variant_llama(), chat_tokenizer(), tmp_path / "m")
    real = gguf_mod._write_one

    def failing(path, shape, vocab, tensors, outtype, **kw):
        if outtype == "q8_0":
            path.write_bytes(b"GGUF partial")
            raise OSError("disk full")
        return real(path, shape, vocab, tensors, outtype, **kw)

    monkeypatch.setattr(gguf_mod, "_write_one", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        export_for_ollama(model_dir, out)
    assert list(out.iterdir()) == []  # the finished f16 file and the partial q8_0 are gone


def test_tokenizer_without_merges_is_refused(tmp_path) -> None:
    from tests.helpers.tiny import byte_tokenizer, tiny_llama

    tok = byte_tokenizer()
    tok.chat_template = chat_tokenizer().chat_template
    model_dir = save_model(tiny_llama(), tok, tmp_path / "bytes")
    with pytest.raises(ExportError, match="no merges"):
        export_for_ollama(model_dir, tmp_path / "out")


@pytest.mark.slow
def test_smollm2_q8_0_matches_hf(tmp_path, default_model_dir: Path) -> None:
    """The real SmolLM2-135M-Instruct: q8_0 GGUF logits on clinical text vs the HF model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = default_model_dir  # converted once per session into a temporary cache
    result = export_for_ollama(
        src, tmp_path, serve=ServeConfig(gguf={"outtypes": ["q8_0"]}), name="smollm2"
    )
    md = read_gguf_metadata(result.gguf["q8_0"])
    assert (
        md["llama.block_count"],
        md["llama.attention.head_count"],
        md["llama.attention.head_count_kv"],
    ) == (30, 9, 3)
    assert md["tokenizer.chat_template"].startswith("{% for message in messages %}")
    tok = AutoTokenizer.from_pretrained(src)
    ids = tok(CLINICAL_TEXT, return_tensors="pt").input_ids
    ref = _logits(AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval(), ids)
    path = result.gguf["q8_0"]
    got = _logits(
        AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        ).eval(),
        ids,
    )
    # q8_0 on a 30-layer model: logits within 1.5 of +-40, next-token argmax mostly kept
    assert (got - ref).abs().max().item() < 1.5
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.9
    assert "<|im_start|>{{ .Role }}" in result.modelfile.read_text()
