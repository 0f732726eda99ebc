"""Per-class metrics for multiple-choice tasks with one fixed answer set (PubMedQA's
yes / no / maybe): accuracy alone hides a model that always answers "yes".

PubMedQA reports accuracy and macro-F1 (Jin et al. 2019); the majority-class baseline
(always answer the most frequent gold label) is the number a model must beat to have
learned anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def fixed_labels(predictions: Sequence[dict]) -> list[str] | None:
    """The shared option list when every item has the same options, else None."""
    if not predictions:
        return None
    first = list(predictions[0]["options"])
    return first if all(list(p["options"]) == first for p in predictions) else None


def label_metrics(predictions: Sequence[dict], key: str = "pred") -> dict | None:
    """Macro-F1, per-class precision / recall / F1 / support, the confusion matrix (rows:
    gold, columns: predicted) and the majority-class baseline, from per-item predictions
    (``answer`` and ``pred`` indices, ``options``); None when items differ in their options."""
    labels = fixed_labels(predictions)
    if labels is None:
        return None
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for p in predictions:
        confusion[p["answer"]][p[key]] += 1
    per_class = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        support = sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": predicted,
        }
    # macro-F1 over the labels that occur in gold or predictions, as sklearn's
    # f1_score(average="macro") (PubMedQA's own evaluation script) does
    present = [c for c in labels if per_class[c]["support"] or per_class[c]["predicted"]]
    gold = Counter(p["answer"] for p in predictions)
    majority, count = max(gold.items(), key=lambda kv: (kv[1], -kv[0]))
    return {
        "labels": labels,
        "macro_f1": sum(per_class[c]["f1"] for c in present) / len(present),
        "per_class": per_class,
        "confusion": confusion,
        "majority_label": labels[majority],
        "majority_baseline": count / len(predictions),
    }
