"""The search's test setup: a run config over small data on which the dense tiny model is
informative (shared by the search tests and the search-grid benchmark's test)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

RECOVERY = [
    f"Patient {i} was seen in clinic today and reported feeling well after visit number {i}."
    for i in range(40)
]
TERMS = ["hypertension", "tachycardia", "pneumonia", "anemia"]


def search_data(root: Path, n_per_category: int = 12) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    rec = root / "recovery.jsonl"
    rec.write_text("".join(json.dumps({"text": t}) + "\n" for t in RECOVERY))
    calib = root / "calibration.jsonl"
    calib.write_text(
        "".join(
            json.dumps(
                {"text": f"The blood pressure reading number {i} was taken at rest in the morning."}
            )
            + "\n"
            for i in range(40)
        )
    )
    items = []
    for cat, src in (("cardio", "hpo"), ("lungs", "hpo"), ("codes", "icd")):
        for i in range(n_per_category):
            answer = (i * 7 + len(cat)) % 4
            items.append(
                {
                    "id": f"{cat}-{i}",
                    "question": f"Question {i} about {cat}: which term fits?\nAnswer:",
                    "options": TERMS,
                    "answer": answer,
                    "category": cat,
                    "source": src,
                }
            )
    mcq = root / "mcq.jsonl"
    mcq.write_text("".join(json.dumps(r) + "\n" for r in items))
    return {"recovery": rec, "calibration": calib, "mcq": mcq}


def answer_as_dense(model_dir: Path, path: Path, wrong_every: int = 5) -> None:
    """Make the dense model informative on ``path``: each item's options are rotated (so
    the right answers are spread over the positions) and its answer is the option the dense
    model prefers, except every ``wrong_every``-th item. A random tiny model is at chance on
    any fixed answer key, and the gate refuses to certify on a source where the dense model
    is no better than chance."""
    from medprune.evaluate.formats import load_mcq
    from medprune.evaluate.mcq import score_mcq
    from medprune.load.model import load_model

    records = [json.loads(line) for line in path.read_text().splitlines()]
    for k, r in enumerate(records):
        r["options"] = r["options"][k % 4 :] + r["options"][: k % 4]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    model, tokenizer = load_model(model_dir)
    preds = score_mcq(model, tokenizer, load_mcq(path)).predictions
    for k, (r, p) in enumerate(zip(records, preds, strict=True)):
        r["answer"] = (p["pred"] + 1) % 4 if k % wrong_every == 0 else p["pred"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def independent_items(root: Path, n: int = 40) -> Path:
    """A second multiple-choice source in another wording than evaluate.mcq and the texts."""
    path = root / "other.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"other-{i}",
                    "question": f"Item {i}. Pick the word a nurse would write here:\nAnswer:",
                    "options": ["fever", "cough", "rash", "sleep"],
                    "answer": 0,
                    "category": "other",
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return path


def write_search_config(
    root: Path, model_dir: Path, search: dict | None = None, **sections
) -> Path:
    data = search_data(root / "data")
    other = independent_items(root / "data")
    if (model_dir / "config.json").is_file():
        answer_as_dense(model_dir, data["mcq"])
        answer_as_dense(model_dir, other)
    cfg = {
        "run_name": "search-test",
        "output_dir": str(root / "runs"),
        "model": {"source": str(model_dir), "name": "tiny-llama"},
        "prune": {
            "method": "wanda",
            "calibration": {"data": str(data["calibration"]), "num_samples": 4, "seq_len": 32},
        },
        "recover": {"data": str(data["recovery"]), "seq_len": 32, "batch_size": 2, "lr": 1e-4},
        "evaluate": {
            "mcq": str(data["mcq"]),
            "mcq_sources": [{"name": "other", "data": str(other)}],
            "batch_size": 8,
            "seq_len": 64,
            "latency_repeats": 1,
            "latency_seq_len": 16,
        },
        "gate": {"min_accuracy": 0.0, "non_inferiority": {"margin": 0.6, "min_items": 5}},
        "registry": {"local": {"root": str(root / "registry")}, "aliases": ["candidate"]},
        "search": {
            "axes": [
                {"kind": "width", "values": [0.2, 0.4]},
                {"kind": "unstructured", "values": [0.3, 0.6, 0.9]},
            ],
            "rungs": [{"items": 10, "tolerance": 0.3}, {"items": 16, "recover_steps": 1}],
            "kl": {"texts": 2, "seq_len": 32},
            "certification": {"fraction": 0.5, "assumed_discordance": 0.3},
            **(search or {}),
        },
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / "search.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
