"""The multiple-choice scorer: a hand-computed example, and batching that changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

from medprune.evaluate.formats import MCQItem
from medprune.evaluate.mcq import encode_pair, loglikelihoods, option_loglikelihoods, score_mcq

from tests.helpers.tiny import TINY_VOCAB, byte_tokenizer, tiny_llama


def bigram_model(tokenizer, scores: dict[tuple[str, str], float]):
    """A Llama whose attention and MLP output zero, so the logits at a position depend only
    on that position's token: log p(next | prev) = log_softmax(S[prev])[next], where S is
    zero except ``scores[(prev_char, next_char)]``."""
    hidden = 320  # >= vocab, so every token gets its own one-hot embedding
    model = tiny_llama(
        hidden_size=hidden, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2
    )
    S = torch.zeros(TINY_VOCAB, TINY_VOCAB)
    for (prev, nxt), value in scores.items():
        (p,), (n,) = tokenizer(prev)["input_ids"], tokenizer(nxt)["input_ids"]
        S[p, n] = value
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = torch.zeros(TINY_VOCAB, hidden)
        emb[torch.arange(TINY_VOCAB), torch.arange(TINY_VOCAB)] = math.sqrt(
            hidden
        )  # RMS 1: the norm keeps it
        model.model.embed_tokens.weight.copy_(emb)
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, :TINY_VOCAB] = S.T / math.sqrt(hidden)
    return model


def test_scores_match_a_hand_computed_example():
    tok = byte_tokenizer()
    model = bigram_model(tok, {(":", " "): 2.0, (" ", "a"): 1.0, (" ", "b"): 3.0, ("b", "b"): -1.0})
    V = TINY_VOCAB
    lp_space = 2.0 - math.log(V - 1 + math.e**2)  # log p(' ' | ':')
    row_space = math.log(V - 2 + math.e + math.e**3)
    lp_a, lp_b = 1.0 - row_space, 3.0 - row_space  # log p('a' | ' '), log p('b' | ' ')
    lp_bb = -1.0 - math.log(V - 1 + math.e**-1)  # log p('b' | 'b')
    expected_a, expected_bb = lp_space + lp_a, lp_space + lp_b + lp_bb  # -8.22, -12.78

    item = MCQItem("hand-1", "Q", ("a", "bb"), answer=1, category="toy", prompt="Q:")
    result = score_mcq(model, tok, [item])
    pred = result.predictions[0]
    assert pred["loglikelihoods"] == pytest.approx([expected_a, expected_bb], abs=1e-4)
    # acc: the larger sum ('a'); acc_norm divides by characters: -8.22/1 < -12.78/2
    assert pred["pred"] == 0 and pred["pred_norm"] == 1
    assert (result.acc, result.acc_norm) == (0.0, 1.0)
    assert result.per_category == {"toy": {"acc": 0.0, "acc_norm": 1.0, "n": 1}}


def _naive(model, tok, context: str, continuation: str) -> float:
    ctx, cont = encode_pair(tok, context, continuation)
    with torch.no_grad():
        logprobs = torch.log_softmax(
            model(input_ids=torch.tensor([ctx + cont])).logits.float(), -1
        )[0]
    return sum(float(logprobs[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


def test_batched_prefix_sharing_equals_one_sequence_at_a_time():
    model, tok = tiny_llama(seed=3), byte_tokenizer()
    contexts = [
        "Question: which antidote?\nAnswer:",
        "Q: dose of amoxicillin for a child with otitis media\nA:",
        "Hi",
    ]
    options = [
        [" naloxone", " atropine", " flumazenil"],
        [" 50 mg/kg/day", " 5 g"],
        [" x", " yy", " zzz", " w"],
    ]
    for batch_size in (1, 2, 8):
        got = option_loglikelihoods(model, tok, contexts, options, batch_size=batch_size)
        want = [
            [_naive(model, tok, c, o) for o in opts]
            for c, opts in zip(contexts, options, strict=True)
        ]
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-4)
    # the request-list form groups by context and returns the same numbers in request order
    requests = [(contexts[1], " 5 g"), (contexts[0], " atropine"), (contexts[1], " 50 mg/kg/day")]
    assert loglikelihoods(model, tok, requests) == pytest.approx(
        [_naive(model, tok, c, o) for c, o in requests], abs=1e-4
    )


def test_trailing_space_of_the_context_moves_to_the_continuation():
    tok = byte_tokenizer()
    assert encode_pair(tok, "Answer: ", "yes") == encode_pair(tok, "Answer:", " yes")
    ctx, cont = encode_pair(tok, "Answer:", " yes")
    assert tok.decode(ctx) == "Answer:" and tok.decode(cont) == " yes"


def test_long_context_is_truncated_from_the_left():
    model, tok = tiny_llama(seed=1), byte_tokenizer()
    context = "x" * 100 + "\nAnswer:"
    got = option_loglikelihoods(model, tok, [context], [[" a", " bc"]], max_length=16)[0]
    # the model saw only the last 16 - 3 + 1 context tokens, like lm-evaluation-harness
    assert got == pytest.approx(
        [_naive(model, tok, context[-14:], " a"), _naive(model, tok, context[-14:], " bc")],
        abs=1e-4,
    )
