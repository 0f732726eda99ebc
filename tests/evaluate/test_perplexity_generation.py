"""Sliding-window perplexity and greedy generation scoring on the tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medprune.errors import DataError
from medprune.evaluate.generation import (
    GenerationItem,
    load_generation,
    normalize_answer,
    rouge_l,
    score_generation,
)
from medprune.evaluate.perplexity import perplexity, sliding_windows

from tests.helpers.tiny import byte_tokenizer, tiny_llama


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(10, 4, 2), (10, 4, 4), (9, 16, 8), (100, 32, 7), (2, 2, 1)]
)
def test_sliding_windows_score_every_token_once(n, window, stride):
    scored = []
    for begin, end, k in sliding_windows(n, window, stride):
        assert (
            end - begin <= window and 1 <= k <= end - begin - 1
        )  # a token before the first target
        scored += list(range(end - k, end))
    assert scored == list(range(1, n))  # position 0 has nothing before it


def _full_nll(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    return float(
        torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum")
    )


def test_perplexity_equals_hand_computed_nll_and_bits_per_byte():
    model, tok = tiny_llama(seed=2), byte_tokenizer()
    texts = [
        "Sepsis is a life-threatening organ dysfunction.",
        "Warfarin dose is adjusted to the INR.",
    ]
    res = perplexity(model, tok, texts, max_length=512, batch_size=2)
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    total = sum(_full_nll(model, i) for i in ids)
    n_tokens = sum(len(i) - 1 for i in ids)
    assert res.tokens == n_tokens and res.texts == 2
    assert res.nll == pytest.approx(total / n_tokens, rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(total / n_tokens), rel=1e-5)
    n_bytes = sum(len(t.encode()) for t in texts)
    assert res.bytes == n_bytes and res.bits_per_byte == pytest.approx(
        total / math.log(2) / n_bytes, rel=1e-5
    )


def test_sliding_window_counts_every_token_and_context_helps():
    model, tok = tiny_llama(seed=2), byte_tokenizer()
    text = ["The patient was started on intravenous antibiotics after blood cultures. " * 3]
    disjoint = perplexity(model, tok, text, max_length=32, stride=32)
    sliding = perplexity(model, tok, text, max_length=32, stride=8)
    whole = perplexity(model, tok, text, max_length=512)
    assert disjoint.tokens == sliding.tokens == whole.tokens
    # with a window as long as the text, a sliding window is the full-context number
    assert perplexity(model, tok, text, max_length=512, stride=8).nll == pytest.approx(
        whole.nll, rel=1e-6
    )
    assert sliding.nll != pytest.approx(disjoint.nll, rel=1e-6)
    with pytest.raises(DataError, match="stride 64 is larger than the window 32"):
        perplexity(model, tok, text, max_length=32, stride=64)


def test_rouge_l_and_exact_match():
    assert rouge_l("the patient has pneumonia", "the patient has pneumonia") == 1.0
    assert rouge_l("nothing in common", "entirely different words") == 0.0
    # LCS "patient pneumonia" (2) of 3 and 4 tokens: F1 = 2PR/(P+R) with P=2/3, R=2/4
    assert rouge_l("patient has pneumonia", "the patient developed pneumonia") == pytest.approx(
        2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    )
    assert normalize_answer("  Pneumonia. ") == normalize_answer("pneumonia")


def test_generation_scores_greedy_outputs(tmp_path):
    model, tok = tiny_llama(seed=4), byte_tokenizer()
    items = [
        GenerationItem("g1", "Summary: chest pain", "angina", "cardio"),
        GenerationItem("g2", "Summary of a long note: fever", "sepsis"),
    ]
    res = score_generation(model, tok, items, max_new_tokens=5, batch_size=2)
    assert res.n == 2 and res.max_new_tokens == 5
    for p in res.predictions:
        assert p["new_tokens"] <= 5
        assert p["rouge_l"] == pytest.approx(rouge_l(p["prediction"], p["reference"]))
    # greedy and batched: the same output as generating alone
    alone = score_generation(model, tok, items[:1], max_new_tokens=5, batch_size=1)
    assert alone.predictions[0]["prediction"] == res.predictions[0]["prediction"]
    assert set(res.per_category) == {"cardio", "all"}


def test_generation_file_errors_name_line_and_field(tmp_path):
    path = tmp_path / "sum.jsonl"
    path.write_text(
        json.dumps({"input": "a", "reference": "b"}) + "\n" + json.dumps({"input": "a"}) + "\n"
    )
    with pytest.raises(DataError, match=r"sum\.jsonl:2: missing field 'reference'"):
        load_generation(path)
    path.write_text(json.dumps({"input": "a", "reference": " "}) + "\n")
    with pytest.raises(DataError, match=r"sum\.jsonl:1: field 'reference' is empty"):
        load_generation(path)
