"""Parity with lm-evaluation-harness 0.4: same model, same items, same accuracy.

Needs the optional ``parity`` extra (``pip install -e '.[parity]'``); skipped without it.
"""

from __future__ import annotations

import json

import pytest

from medprune.evaluate.formats import load_mcq
from medprune.evaluate.mcq import score_mcq
from medprune.load.model import load_model

pytestmark = pytest.mark.slow

PARITY_EXTRA = "needs the 'parity' extra: pip install -e '.[parity]'"

ITEMS = [
    (
        "Which drug reverses opioid overdose?",
        ["naloxone", "atropine", "flumazenil", "glucagon"],
        0,
        "toxicology",
    ),
    (
        "First-line treatment of anaphylaxis?",
        ["oral antihistamine", "intramuscular epinephrine", "steroids"],
        1,
        "emergency",
    ),
    (
        "Peaked T waves suggest?",
        ["hypokalaemia", "hyperkalaemia", "hypocalcaemia", "hypernatraemia"],
        1,
        "cardiology",
    ),
    ("Warfarin in pregnancy is?", ["safe", "contraindicated"], 1, "contraindications"),
    ("Maximum daily paracetamol dose in adults?", ["4 g", "40 g", "400 mg", "1 kg"], 0, "dosing"),
    ("Vitamin deficient in scurvy?", ["A", "B12", "C", "D", "K"], 2, "nutrition"),
    (
        "Does smoking raise the risk of lung cancer? Answer yes, no or maybe.",
        ["yes", "no", "maybe"],
        0,
        "pubmedqa",
    ),
    (
        "Antidote for paracetamol overdose?",
        ["N-acetylcysteine", "naloxone", "vitamin K"],
        0,
        "toxicology",
    ),
    ("ACE inhibitors end in?", ["-pril", "-olol", "-statin", "-sartan"], 0, "pharmacology"),
    (
        "A common cause of community-acquired pneumonia?",
        ["Streptococcus pneumoniae", "Clostridium difficile"],
        0,
        "infection",
    ),
]


def test_accuracy_equals_lm_evaluation_harness(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    lm_eval = pytest.importorskip("lm_eval", reason=PARITY_EXTRA)
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    ours_file = tmp_path / "items.jsonl"
    ours_file.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "question": q, "options": o, "answer": a, "category": c})
            + "\n"
            for i, (q, o, a, c) in enumerate(ITEMS)
        )
    )
    items = load_mcq(ours_file)
    # the same items for lm-eval: our prompt as doc_to_text, options as choices
    harness_file = tmp_path / "harness.jsonl"
    harness_file.write_text(
        "".join(
            json.dumps({"prompt": it.context, "options": list(it.options), "answer": it.answer})
            + "\n"
            for it in items
        )
    )
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "medprune_parity.yaml").write_text(
        "task: medprune_parity\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {harness_file}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: prompt\n"
        "doc_to_choice: options\n"
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    harness = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(tiny_model_dir), batch_size=4, device="cpu", dtype="float32"),
        tasks=["medprune_parity"],
        task_manager=TaskManager(include_path=str(task_dir)),
        log_samples=True,
    )
    model, tokenizer = load_model(tiny_model_dir)
    ours = score_mcq(model, tokenizer, items, batch_size=3)

    metrics = harness["results"]["medprune_parity"]
    assert ours.acc == pytest.approx(metrics["acc,none"])
    assert ours.acc_norm == pytest.approx(metrics["acc_norm,none"])
    samples = harness["samples"]["medprune_parity"]
    assert len(samples) == len(ITEMS)
    for sample in samples:
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        assert ours.predictions[sample["doc_id"]]["loglikelihoods"] == pytest.approx(
            theirs, abs=1e-4
        )


def test_pubmedqa_equals_lm_evaluation_harness_item_by_item(tmp_path, monkeypatch):
    """lm-evaluation-harness's own ``pubmedqa`` task (its yaml and ``doc_to_text``, pointed at
    real PubMedQA items in the Hugging Face shape) against ours reading the original release:
    the same prompt string, log-likelihoods and accuracy for every item."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    lm_eval = pytest.importorskip("lm_eval", reason=PARITY_EXTRA)
    from pathlib import Path

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tests.helpers.tiny import save_tiny_model

    # abstracts are ~1,500 byte tokens: a context long enough that neither side truncates
    tiny_model_dir = save_tiny_model(tmp_path / "tiny-long", max_position_embeddings=4096)
    task_yaml = Path(lm_eval.__file__).parent / "tasks" / "pubmedqa" / "pubmedqa.yaml"
    if not task_yaml.is_file():
        pytest.skip(f"{task_yaml} not in this lm-eval")
    from medprune.data.licensed import licensed_path

    pubmedqa = licensed_path("pubmedqa_dev")
    raw = json.loads(pubmedqa.read_text(encoding="utf-8"))
    ids = list(raw)[:12]
    harness_file = tmp_path / "pubmedqa_hf.jsonl"
    harness_file.write_text(
        "".join(
            # both record shapes the harness has read: the release's keys (bigbio source schema,
            # lm-eval >= 0.4.3) and the Hugging Face pubmed_qa ones (earlier 0.4 releases)
            json.dumps(
                {
                    "pubid": int(k),
                    "QUESTION": raw[k]["QUESTION"],
                    "CONTEXTS": raw[k]["CONTEXTS"],
                    "question": raw[k]["QUESTION"],
                    "context": {"contexts": raw[k]["CONTEXTS"]},
                    "final_decision": raw[k]["final_decision"],
                }
            )
            + "\n"
            for k in ids
        )
    )
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    # the harness's task file itself, with only the data source replaced by the local items
    (task_dir / "pubmedqa_local.yaml").write_text(
        f"include: {task_yaml}\n"
        "task: pubmedqa_local\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {harness_file}\n"
        "training_split: null\n"
        "validation_split: null\n"
        "test_split: test\n"
    )
    harness = lm_eval.simple_evaluate(
        model=HFLM(
            pretrained=str(tiny_model_dir),
            batch_size=4,
            device="cpu",
            dtype="float32",
            max_length=4096,
        ),
        tasks=["pubmedqa_local"],
        task_manager=TaskManager(include_path=str(task_dir)),
        log_samples=True,
    )
    items = load_mcq(pubmedqa, len(ids))
    model, tokenizer = load_model(tiny_model_dir)
    ours = score_mcq(model, tokenizer, items, batch_size=3, max_length=4096)
    samples = sorted(harness["samples"]["pubmedqa_local"], key=lambda s: s["doc_id"])
    assert len(samples) == len(ids)
    for sample, item, pred in zip(samples, items, ours.predictions, strict=True):
        assert str(sample["doc"]["pubid"]) == item.id
        contexts = {
            a[0] if isinstance(a, (list, tuple)) else a["arg_0"] for a in sample["arguments"]
        }
        assert contexts == {item.context}  # the prompt string, byte for byte
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        assert pred["loglikelihoods"] == pytest.approx(theirs, abs=1e-4)
    assert ours.acc == pytest.approx(harness["results"]["pubmedqa_local"]["acc,none"])
