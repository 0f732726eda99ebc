"""Small clinical-style data files in the formats the stages read, and a run config for the tiny
model over them."""

from __future__ import annotations

from pathlib import Path

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
