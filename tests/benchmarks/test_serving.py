"""benchmarks/serving.py: row specs, the llama.cpp table, and llama.cpp's numbers for a real
(tiny) exported file (skipped when llama.cpp is not built)."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pytest

from benchmarks.serving import format_llama_table, format_table, parse_row, run_llama_cpp
from medprune.export.llama_cpp import LlamaCpp

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP = LlamaCpp(
    Path(os.environ.get("MEDPRUNE_LLAMA_CPP") or REPO / ".cache/medprune/llama.cpp")
)


def test_parse_row() -> None:
    assert parse_row("dense") == ("dense", None, None, "unstructured")
    assert parse_row("wanda-50=wanda:0.5") == ("wanda-50", "wanda", 0.5, "unstructured")
    assert parse_row("wanda-2of4=wanda:0.5:2:4") == ("wanda-2of4", "wanda", 0.5, "2:4")


def _llama(ppl: float, pp: float, tg: float) -> dict:
    return {
        "prompt_tokens": 128,
        "gen_tokens": 64,
        "prompt_tps": pp,
        "gen_tps": tg,
        "prompt_tps_sd": 1.0,
        "gen_tps_sd": 0.5,
        "threads": 2,
        "ppl": ppl,
        "ppl_ctx": 256,
    }


def test_llama_table_relates_each_outtype_to_dense_of_the_same_outtype() -> None:
    rows = [
        {"row": "dense", "llama_cpp": {"f16": _llama(16.9, 400, 100), "q8_0": _llama(17, 500, 90)}},
        {
            "row": "width-25",
            "llama_cpp": {"f16": _llama(37, 600, 120), "q8_0": _llama(38, 600, 117)},
        },
        {"row": "no-llama"},
    ]
    table = format_llama_table(rows).splitlines()
    assert len(table) == 2 + 4
    assert table[4] == (
        "| width-25 | f16 | 37.00 | 600.0 ± 1.0 | 120.0 ± 0.5 | 1.50x | 1.20x | 2 |"
    )
    assert "| width-25 | q8_0 | 38.00 | 600.0 ± 1.0 | 117.0 ± 0.5 | 1.20x | 1.30x | 2 |" in table


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_CPP.is_built(), reason="llama.cpp is not built (make llama-cpp)")
def test_run_llama_cpp_on_an_exported_tiny_model(tmp_path) -> None:
    from medprune.export.gguf import write_gguf

    from tests.helpers.families import save_family, sentencepiece_model

    model_dir = save_family(tmp_path, "llama", "dense", sentencepiece_model())
    files = write_gguf(model_dir, tmp_path / "gguf", llama_cpp_root=LLAMA_CPP.root).files
    data = tmp_path / "data"
    data.mkdir()
    text = "Chest pain radiating to the left arm; troponin elevated, ST elevation on the ECG. "
    (data / "heldout.jsonl").write_text(
        "".join(json.dumps({"text": text * 3}) + "\n" for _ in range(8))
    )
    args = argparse.Namespace(
        llama_cpp=str(LLAMA_CPP.root),
        work=str(tmp_path),
        data=str(data),
        llama_ppl_texts=8,
        llama_ctx=64,
        llama_prompt=16,
        llama_gen=8,
        llama_reps=1,
        threads=1,
    )
    row: dict = {"row": "dense"}
    run_llama_cpp(row, files, args, lambda _msg: None)
    for outtype in ("f16", "q8_0"):
        m = row["llama_cpp"][outtype]
        assert m["prompt_tps"] > 0 and m["gen_tps"] > 0 and m["threads"] == 1
        assert math.isfinite(m["ppl"]) and m["ppl"] > 1.0 and m["repack"] == (outtype != "q8_0")
    row.update(
        shape=dict(layers=2, heads=4, kv_heads=2, head_dim=16, hidden=64, mlp=128),
        params=1,
        files_mb={"f16": 0.1},
        logits={},
        ppl_hf=1.0,
    )
    assert "| dense | q8_0 |" in format_table([row])
