"""Run one GGUF file with llama.cpp (llama-cpp-python) and print one JSON line: prompt
tokens/s, generated tokens/s (greedy) and perplexity from llama.cpp's own logits on
held-out clinical texts. Called by benchmarks/serving.py with a Python that has
llama-cpp-python (it need not have medprune)::

    /tmp/llamavenv/bin/python benchmarks/llama_cpp_run.py model-q8_0.gguf --texts heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("gguf")
    p.add_argument("--texts", required=True, help="JSONL with a text field")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ppl-texts", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import numpy as np
    from llama_cpp import Llama

    texts = [
        json.loads(line)["text"] for line in open(args.texts, encoding="utf-8") if line.strip()
    ]
    llm = Llama(
        model_path=args.gguf,
        n_ctx=max(512, args.seq_len + args.gen_tokens + 8),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        logits_all=True,
        verbose=False,
        seed=0,
    )

    # perplexity from llama.cpp's logits (same texts and window as the transformers numbers)
    nll, count = 0.0, 0
    for text in texts[: args.ppl_texts]:
        toks = llm.tokenize(text.encode(), add_bos=False, special=False)[: args.seq_len]
        if len(toks) < 2:
            continue
        llm.reset()
        llm.eval(toks)
        logits = np.asarray(llm.scores[: len(toks)], dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll -= sum(logp[i, toks[i + 1]] for i in range(len(toks) - 1))
        count += len(toks) - 1
    ppl = math.exp(nll / count) if count else float("nan")

    # speed: prompt processing of a clinical note, then greedy generation
    prompt = llm.tokenize(texts[-1].encode(), add_bos=False, special=False)[: args.seq_len]
    prompt_rates, gen_rates = [], []
    for _ in range(args.repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        prompt_rates.append(len(prompt) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = 0
        for _tok in llm.generate(prompt, temp=0.0):  # the evaluated prompt is reused (prefix match)
            n += 1
            if n >= args.gen_tokens:
                break
        gen_rates.append(n / (time.perf_counter() - t0))
    print(
        json.dumps(
            {
                "ppl": ppl,
                "ppl_tokens": count,
                "prompt_tokens": len(prompt),
                "prompt_tok_s": statistics.median(prompt_rates),
                "gen_tok_s": statistics.median(gen_rates),
                "gen_tokens": args.gen_tokens,
                "threads": args.threads,
                "repeats": args.repeats,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
