"""benchmarks/serving.py: row specs, the llama.cpp table, and llama.cpp's numbers for a real
(tiny) exported file (skipped when llama.cpp is not built)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.serving import format_llama_table, format_table, parse_row, run_llama_cpp
from benchmarks.serving_workspace import Manifest, PreparedRow, WorkspaceError
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


# -- the prepare / measure split (--work) ----------------------------------------------------


def _serving(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "benchmarks/serving.py", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_measure_without_a_prepared_work_folder_names_work(tmp_path, state) -> None:
    work = tmp_path / "work"
    if state == "empty":
        work.mkdir()
    proc = _serving("--phase", "measure", "--work", str(work), "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert f"--work {work}" in proc.stderr and "--phase prepare" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def _prepared(work: Path, name: str = "dense", settings: dict | None = None) -> PreparedRow:
    gguf = work / name / "gguf" / f"{name}-f16.gguf"
    gguf.parent.mkdir(parents=True, exist_ok=True)
    gguf.write_bytes(b"GGUF" * 4)
    row = PreparedRow(
        name=name,
        settings=settings or {"spec": name},
        files={"f16": f"{name}/gguf/{name}-f16.gguf"},
        file_bytes={"f16": 16},
        row={"row": name},
    )
    row.save(work)
    return row


def test_a_prepared_row_is_reused_only_with_the_same_settings_and_intact_files(tmp_path):
    row = _prepared(tmp_path)
    assert PreparedRow.done(tmp_path, "dense", {"spec": "dense"}) == row
    assert PreparedRow.done(tmp_path, "dense", {"spec": "dense", "seq_len": 64}) is None
    assert PreparedRow.done(tmp_path, "other", {"spec": "dense"}) is None
    (tmp_path / "dense/gguf/dense-f16.gguf").write_bytes(b"GGUF")  # truncated
    assert PreparedRow.done(tmp_path, "dense", {"spec": "dense"}) is None


def test_manifest_round_trip_and_a_row_whose_files_are_gone(tmp_path):
    rows = [_prepared(tmp_path, "dense"), _prepared(tmp_path, "width-25")]
    Manifest({"name": "tiny"}, {"commit": "x"}, {"seq_len": 32}, rows).save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert [r.name for r in loaded.rows] == ["dense", "width-25"]
    assert loaded.rows == rows and loaded.model == {"name": "tiny"}
    (tmp_path / "width-25/gguf/width-25-f16.gguf").unlink()
    with pytest.raises(WorkspaceError, match=r"--work .*row 'width-25': missing or changed"):
        Manifest.load(tmp_path)


def _tiny_bench_inputs(root: Path) -> tuple[Path, Path]:
    """A 4-layer SentencePiece Llama (llama.cpp's converter reads it; no chat template) and a
    data folder with calibration and held-out clinical texts."""
    from tests.helpers.families import (
        build_family,
        sentencepiece_model,
        write_sentencepiece_tokenizer,
    )
    from tests.helpers.variants import CALIB

    model_dir = root / "tiny-llama"
    build_family("llama", num_hidden_layers=4).save_pretrained(model_dir)
    write_sentencepiece_tokenizer(model_dir, sentencepiece_model())
    data = root / "data"
    data.mkdir()
    text = "Chest pain radiating to the left arm; troponin elevated, ST elevation on the ECG. "
    (data / "heldout.jsonl").write_text(
        "".join(json.dumps({"text": text * 3}) + "\n" for _ in range(8))
    )
    (data / "calibration.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in CALIB * 4)
    )
    return model_dir, data


#: Everything timed: differs between any two runs.
TIMED = {"prune_s", "export_s", "hf_speed", "llama_cpp_timing"}
LLAMA_TIMED = {"prompt_tps", "gen_tps", "prompt_tps_sd", "gen_tps_sd"}


def _untimed(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in TIMED}
    out["llama_cpp"] = {
        t: {k: v for k, v in m.items() if k not in LLAMA_TIMED}
        for t, m in row.get("llama_cpp", {}).items()
    }
    return out


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_CPP.is_built(), reason="llama.cpp is not built (make llama-cpp)")
def test_prepare_then_measure_gives_the_rows_of_all(tmp_path) -> None:
    model_dir, data = _tiny_bench_inputs(tmp_path)
    common = [
        "--model", str(model_dir), "--data", str(data),
        "--rows", "dense", "wanda-2of4=wanda:0.5:2:4", "depth-25=depth:0.25",
        "--calib-samples", "4", "--seq-len", "32", "--ppl-texts", "2", "--logit-texts", "1",
        "--gen-tokens", "4", "--repeats", "1", "--llama-cpp", str(LLAMA_CPP.root),
    ]  # fmt: skip
    llama = ["--llama-ppl-texts", "8", "--llama-ctx", "64", "--llama-prompt", "16"]
    llama += ["--llama-gen", "8", "--llama-reps", "1"]
    all_json, measured_json = tmp_path / "all.json", tmp_path / "measured.json"
    proc = _serving(*common, *llama, "--work", str(tmp_path / "w-all"), "--json", str(all_json))
    assert proc.returncode == 0, proc.stderr[-3000:]

    work = tmp_path / "w"
    proc = _serving("--phase", "prepare", *common, "--work", str(work))
    assert proc.returncode == 0, proc.stderr[-3000:]
    row_json = work / "depth-25" / "row.json"
    stamp = row_json.stat().st_mtime_ns
    again = _serving("--phase", "prepare", *common, "--work", str(work))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("prepared earlier with the same settings: skipped") == 3
    assert row_json.stat().st_mtime_ns == stamp

    proc = _serving(
        "--phase", "measure", "--work", str(work), "--llama-cpp", str(LLAMA_CPP.root),
        *llama, "--json", str(measured_json),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    done, measured = json.loads(all_json.read_text()), json.loads(measured_json.read_text())
    assert [r["row"] for r in measured["rows"]] == ["dense", "wanda-2of4", "depth-25"]
    assert measured["rows"][2]["shape"]["layers"] == 3
    for a, m in zip(done["rows"], measured["rows"], strict=True):
        assert a.keys() == m.keys()
        ua, um = _untimed(a), _untimed(m)
        for outtype in ("f16", "q8_0"):  # same files, same llama.cpp: same perplexity
            assert um["llama_cpp"][outtype].pop("ppl") == pytest.approx(
                ua["llama_cpp"][outtype].pop("ppl"), rel=1e-5
            )
        assert ua == um
        assert isinstance(m["llama_cpp_timing"]["alone"], bool)
    run = measured["run"]
    assert run["phase"] == "measure" and run["complete"] is True
    assert run["model"]["name"] == "tiny-llama" and run["prepare"]["phase"] == "prepare"
    # the second prepare reused the rows: they name the first prepare's command and date
    by = run["prepare"]["rows_prepared_by"]["depth-25"]
    assert by["date"] <= run["prepare"]["date"] and "--phase prepare" in by["command"]
    load = run["machine_load"]
    assert len(load["load_average_at_start"]) == 3 and len(load["load_average_at_end"]) == 3
    assert isinstance(load["alone"], bool) and load["other_cpu_s"] >= 0
    # transformers-side settings come from the prepare run, llama.cpp's from measure
    assert measured["args"]["seq_len"] == 32 and measured["args"]["llama_ctx"] == 64
    assert measured["args"]["phase"] == "measure"


def test_prepare_records_a_refused_row_and_measure_says_nothing_was_prepared(tmp_path):
    model_dir, data = _tiny_bench_inputs(tmp_path)
    work = tmp_path / "w"
    proc = _serving(
        "--phase", "prepare", "--model", str(model_dir), "--data", str(data),
        "--rows", "width-99=width:0.99", "--calib-samples", "4", "--seq-len", "32",
        "--work", str(work),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "[width-99] FAILED: PruneError: prune.sparsity=0.99" in proc.stderr
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["rows"] == [] and manifest["run"]["complete"] is True
    assert manifest["run"]["failed"]["width-99"].startswith("PruneError: prune.sparsity=0.99")
    measured = _serving("--phase", "measure", "--work", str(work))
    assert measured.returncode == 2 and f"--work {work}: manifest.json lists no rows" in (
        measured.stderr
    )


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_CPP.has_source(), reason="llama.cpp is not fetched (make llama-cpp)")
def test_a_depth_pruned_gemma3_file_is_read_back_with_its_own_layer_pattern(tmp_path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from benchmarks.serving import load_gguf_with_transformers
    from medprune.export.gguf import write_gguf

    from tests.helpers.families import save_family, sentencepiece_model

    # 7 layers, layer 2 removed: the sliding/full pattern loses Gemma 3's period of 6
    model_dir = save_family(tmp_path, "gemma3_text", "depth", sentencepiece_model())
    path = write_gguf(
        model_dir, tmp_path / "gguf", outtypes=("f16",), writer="llama.cpp",
        llama_cpp_root=LLAMA_CPP.root,
    ).files["f16"]  # fmt: skip
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    naive = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    loaded = load_gguf_with_transformers(path)
    assert list(loaded.config.layer_types) == list(ref.config.layer_types)
    assert list(naive.config.layer_types) != list(ref.config.layer_types)
    # transformers' GGUF loader also takes query_pre_attn_scalar as 256 (Gemma 3 270M's, not
    # this tiny model's 16): give both loaded models the reference's attention scaling
    for model in (loaded, naive):
        for layer in model.model.layers:
            layer.self_attn.scaling = ref.model.layers[0].self_attn.scaling
    ids = torch.arange(3, 3 + 48).unsqueeze(0)  # longer than the sliding window (16)
    with torch.no_grad():
        want, got, off = ref(ids).logits, loaded(ids).logits, naive(ids).logits
    assert (got - want).abs().max().item() < 0.02 < (off - want).abs().max().item()
