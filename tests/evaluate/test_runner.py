"""evaluate_model writes results, per-item predictions and generations that trace back to items."""

from __future__ import annotations

import json

from medprune.config import EvaluateConfig
from medprune.evaluate.runner import evaluate_model, flat_metrics, read_predictions, read_results

from tests.helpers.fixture_data import write_fixture_data


def test_evaluate_model_writes_traceable_results(tmp_path, tiny_model_dir):
    data = write_fixture_data(tmp_path / "data")
    summ = tmp_path / "data" / "summ.jsonl"
    summ.write_text(
        "".join(
            json.dumps(
                {"id": f"s{i}", "input": f"Note {i}: fever.\nSummary:", "reference": "fever"}
            )
            + "\n"
            for i in range(3)
        )
    )
    cfg = EvaluateConfig(
        mcq=str(data["mcq"]),
        perplexity=str(data["text"]),
        summarization=str(summ),
        batch_size=4,
        seq_len=64,
        ppl_stride=32,
        max_new_tokens=4,
        latency_seq_len=16,
        latency_repeats=3,
    )
    out = tmp_path / "eval"
    res = evaluate_model(tiny_model_dir, cfg, out, label="baseline", progress=lambda _: None)
    assert res == read_results(out) and res["complete"] is True
    preds = read_predictions(out)
    assert [p["id"] for p in preds] == [f"q{i}" for i in range(8)]
    # every aggregate number comes from the per-item lines
    assert res["mcq"]["acc"] == sum(p["correct"] for p in preds) / 8
    assert res["mcq"]["per_category"]["cardio"]["n"] == sum(
        p["category"] == "cardio" for p in preds
    )
    assert all(
        len(p["loglikelihoods"]) == 4
        and p["pred"] == max(range(4), key=lambda k: p["loglikelihoods"][k])
        for p in preds
    )
    gens = read_predictions(out, "generations.jsonl")
    assert [g["id"] for g in gens] == ["s0", "s1", "s2"] and res["generation"]["n"] == 3
    assert res["perplexity"]["stride"] == 32 and res["perplexity"]["bits_per_byte"] > 0
    eff = res["efficiency"]
    assert (
        eff["nonzero_params"] <= eff["total_params"]
        and eff["latency_ms_p95"] >= eff["latency_ms_p50"] > 0
    )
    assert eff["latency_seq_len"] == 16 and eff["peak_memory_bytes"] > 0
    # settings carry a hash of each data file, not its location
    assert set(res["settings"]["data_sha256"]) == {"mcq", "perplexity", "summarization"}
    assert "mcq" not in res["settings"]
    flat = flat_metrics(res, "baseline")
    assert (
        flat["baseline_accuracy"] == res["mcq"]["acc"]
        and flat["baseline_rouge_l"] == res["generation"]["rouge_l"]
    )
    assert flat["baseline_accuracy_cardio"] == res["mcq"]["per_category"]["cardio"]["acc"]
    assert all(isinstance(v, float) for v in flat.values())
