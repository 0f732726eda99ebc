"""What one-pass (sub-layer sequential) calibration changes: masks, perplexity, time.

    python benchmarks/one_pass.py --threads 1 --json benchmarks/results/
    # -> one-pass-<date>-<commit>.json (or --json FILE)

For Wanda and SparseGPT at 50% the model is pruned twice from the same dense weights and
the same calibration token ids:

- ``two-pass`` (``prune.calibration.passes: 2``): the statistics of every linear of a
  layer come from one forward of the dense layer, then the pruned layer is run again to
  make the next layer's inputs (what llmcompressor's sequential pipeline does);
- ``one-pass`` (``passes: 1``, the default): each sub-layer computed once, with the
  sub-layers before it already pruned (:mod:`medprune.prune.sequential`).

Both run :func:`medprune.prune.engine.prune_model` with the same SparseGPT and Wanda
functions, so only the statistics differ. Reported: the share of weights whose keep/prune
decision differs, per linear kind; held-out perplexity of both; pruning wall and CPU time
of both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

CACHE = Path(".cache/medprune")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(CACHE / "models/smollm2-135m-instruct"))
    p.add_argument("--calibration", default=str(CACHE / "data/calibration.jsonl"))
    p.add_argument("--heldout", default=str(CACHE / "data/heldout.jsonl"))
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ppl-texts", type=int, default=50)
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--methods", default="wanda,sparsegpt")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from medprune.config import PruneConfig
    from medprune.evaluate.perplexity import perplexity
    from medprune.io.jsonl import read_texts
    from medprune.load.model import load_model
    from medprune.prune.apply import prunable_linears
    from medprune.prune.calibration import load_calibration_texts
    from medprune.prune.engine import prune_model

    from run_info import results_path, run_info

    info = run_info(args.threads)
    info["settings"] = {
        k: getattr(args, k)
        for k in ("model", "calibration", "heldout", "num_samples", "seq_len", "batch_size")
    } | {k: getattr(args, k) for k in ("ppl_texts", "eval_seq_len", "sparsity", "methods")}
    json_path = results_path(args.json, "one-pass", info) if args.json else None
    texts = load_calibration_texts(args.calibration)
    heldout = read_texts(args.heldout)[: args.ppl_texts]
    results = []
    for method in args.methods.split(","):
        row: dict = {"method": method, "sparsity": args.sparsity}
        masks = {}
        for mode in ("two-pass", "one-pass"):
            model, tokenizer = load_model(args.model, dtype="float32")
            cfg = PruneConfig(
                method=method,
                sparsity=args.sparsity,
                calibration={
                    "num_samples": args.num_samples,
                    "seq_len": args.seq_len,
                    "batch_size": args.batch_size,
                    "passes": 2 if mode == "two-pass" else 1,
                },
            )
            wall, cpu = time.perf_counter(), time.process_time()
            prune_model(model, tokenizer, cfg, calib_texts=texts, device="cpu")
            row[f"{mode} prune_wall_s"] = time.perf_counter() - wall
            row[f"{mode} prune_cpu_s"] = time.process_time() - cpu
            masks[mode] = {
                n: (m.weight != 0) for n, m in prunable_linears(model.model.layers).items()
            }
            row[f"{mode} perplexity"] = perplexity(
                model, tokenizer, heldout, max_length=args.eval_seq_len
            ).perplexity
            print(
                f"[{method} {mode}] {row[f'{mode} prune_wall_s']:.0f}s, ppl {row[f'{mode} perplexity']:.3f}",
                file=sys.stderr,
                flush=True,
            )
        differ: dict[str, list[int]] = {}
        for name, keep in masks["one-pass"].items():
            kind = name.rsplit(".", 1)[-1]
            d = differ.setdefault(kind, [0, 0])
            d[0] += int((keep != masks["two-pass"][name]).sum())
            d[1] += keep.numel()
        row["mask_differs"] = {k: v[0] / v[1] for k, v in differ.items()}
        row["mask_differs_all"] = sum(v[0] for v in differ.values()) / sum(
            v[1] for v in differ.values()
        )
        row["perplexity_ratio"] = row["one-pass perplexity"] / row["two-pass perplexity"]
        results.append(row)
        print(json.dumps(row, indent=1), flush=True)
        if json_path is not None:
            done = len(results) == len(args.methods.split(","))
            doc = {"run": {**info, "complete": done}, "rows": results}
            json_path.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
