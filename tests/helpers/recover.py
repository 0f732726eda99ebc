"""Small clinical-ish data and pruned tiny models for the recover tests."""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "Patient presents with chest pain radiating to the left arm; troponin is elevated.",
    "Start metformin 500 mg twice daily and recheck HbA1c in three months.",
    "Chest X-ray shows right lower lobe consolidation consistent with pneumonia.",
    "Blood pressure 162/98 on two visits; begin lisinopril and lifestyle advice.",
    "Sodium 128 mmol/L; evaluate for SIADH and review thiazide use.",
    "Wheeze and prolonged expiration; give salbutamol via spacer and reassess.",
    "Creatinine rose from 90 to 180 umol/L after contrast; hold nephrotoxic drugs.",
    "New atrial fibrillation with rate 130; consider anticoagulation by CHA2DS2-VASc.",
]


def clinical_texts(n: int = 24) -> list[str]:
    return [f"Note {i}: {SENTENCES[i % len(SENTENCES)]}" for i in range(n)]


def write_text_jsonl(path: Path, n: int = 24) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in clinical_texts(n)))
    return path


def write_instruction_jsonl(path: Path, n: int = 12) -> Path:
    rows = [
        {"prompt": f"Q{i}: what is the next step? ", "response": SENTENCES[i % len(SENTENCES)]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def packed_examples(seq_len: int = 32):
    """:func:`clinical_texts` packed by the byte tokenizer into ``seq_len``-token sequences."""
    from medprune.recover.data import pack_text

    from tests.helpers.tiny import byte_tokenizer

    return pack_text(
        byte_tokenizer(),
        "mem",
        list(enumerate(({"text": t} for t in clinical_texts()), 1)),
        seq_len,
    )


def pruned_tiny(seed: int = 0, pattern: str = "unstructured", sparsity: float = 0.5):
    """A tiny Llama pruned by magnitude with the pruning engine."""
    from medprune.config import PruneConfig
    from medprune.prune.engine import prune_model

    from tests.helpers.tiny import tiny_llama

    cfg = PruneConfig(method="magnitude", sparsity=sparsity, pattern=pattern)
    return prune_model(tiny_llama(seed), None, cfg).model
