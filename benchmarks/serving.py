"""Serving benchmark: GGUF export of dense and pruned models, checked and timed.

For each row (dense, or a pruning setting) it prunes SmolLM2 (float32, calibration on the
built-in clinical calibration text), exports f16 and q8_0 GGUF files with
``medprune.export``, and measures:

- file sizes;
- logits of the GGUF files (loaded back with transformers' ``gguf_file=``) against the HF
  model on held-out clinical texts: max and mean |difference|, next-token agreement;
- perplexity on held-out clinical text of the HF model and of the q8_0 file;
- with ``--llama-python PY`` (a Python with ``llama-cpp-python`` installed), llama.cpp
  itself runs each q8_0 file: prompt tokens/s, generated tokens/s, and perplexity from
  llama.cpp's own logits, in a subprocess (``benchmarks/llama_cpp_run.py``)::

    python benchmarks/serving.py --threads 1 --json benchmarks/results/serving-smollm2-135m.json \
        --llama-python /tmp/llamavenv/bin/python

Rows are ``NAME=METHOD:SPARSITY`` (``dense`` alone for the unpruned model).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(".cache/medprune")
DEFAULT_ROWS = ["dense", "wanda-50=wanda:0.5", "width-25=width:0.25", "depth-25=depth:0.25"]


def _logit_stats(ref_model, gguf_model, tok, texts, seq_len):
    import torch

    max_diff, sum_diff, n, agree = 0.0, 0.0, 0, 0
    for text in texts:
        ids = tok(text, return_tensors="pt", truncation=True, max_length=seq_len).input_ids
        with torch.no_grad():
            r, g = ref_model(ids).logits[0], gguf_model(ids).logits[0]
        d = (r - g).abs()
        max_diff = max(max_diff, d.max().item())
        sum_diff += d.mean().item() * ids.shape[1]
        n += ids.shape[1]
        agree += (r.argmax(-1) == g.argmax(-1)).sum().item()
    return {"max_abs": max_diff, "mean_abs": sum_diff / n, "top1_agree": agree / n}


def _hf_speed(model, tok, text: str, args) -> dict:
    """transformers (PyTorch, float32) prompt and greedy-generation tokens/s, median of repeats,
    per wall second and per CPU second of this process (the CPU rate does not depend on how
    busy a shared machine is, and is what energy estimates need)."""
    import statistics

    import torch

    ids = tok(text, return_tensors="pt", truncation=True, max_length=args.seq_len).input_ids
    rates: dict[str, list[float]] = {
        "prompt_tok_s": [],
        "gen_tok_s": [],
        "prompt_tok_cpu_s": [],
        "gen_tok_cpu_s": [],
    }
    for _ in range(args.repeats):
        with torch.no_grad():
            t0, c0 = time.perf_counter(), time.process_time()
            model(ids)
            t1, c1 = time.perf_counter(), time.process_time()
            out = model.generate(
                ids,
                max_new_tokens=args.gen_tokens,
                min_new_tokens=args.gen_tokens,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
            t2, c2 = time.perf_counter(), time.process_time()
        n = out.shape[1] - ids.shape[1]
        rates["prompt_tok_s"].append(ids.shape[1] / (t1 - t0))
        rates["prompt_tok_cpu_s"].append(ids.shape[1] / max(c1 - c0, 1e-9))
        rates["gen_tok_s"].append(n / (t2 - t1))
        rates["gen_tok_cpu_s"].append(n / max(c2 - c1, 1e-9))
    return {
        **{k: statistics.median(v) for k, v in rates.items()},
        "prompt_tokens": int(ids.shape[1]),
        "gen_tokens": args.gen_tokens,
        "threads": args.threads,
    }


def run_row(spec: str, args, work: Path, say) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from medprune.config import PruneConfig
    from medprune.evaluate.perplexity import perplexity
    from medprune.export.bundle import export_for_ollama
    from medprune.io.jsonl import read_texts
    from medprune.load.model import load_model, save_model
    from medprune.prune.engine import prune_model

    name, _, rest = spec.partition("=")
    row: dict = {"row": name}
    model, tok = load_model(args.model, dtype="float32")
    if rest:
        method, sparsity = rest.split(":")[0], float(rest.split(":")[1])
        row.update(method=method, sparsity=sparsity)
        calib = read_texts(
            Path(args.data) / "calibration.jsonl"
        )  # the engine packs num_samples x seq_len
        pcfg = PruneConfig(
            method=method,
            sparsity=sparsity,
            calibration={"num_samples": args.calib_samples, "seq_len": args.seq_len},
        )
        t0 = time.perf_counter()
        model = prune_model(model, tok, pcfg, calib_texts=calib).model
        row["prune_s"] = round(time.perf_counter() - t0, 1)
    cfg = model.config
    row["shape"] = {
        "layers": cfg.num_hidden_layers,
        "heads": cfg.num_attention_heads,
        "kv_heads": cfg.num_key_value_heads,
        "head_dim": getattr(cfg, "head_dim", None),
        "hidden": cfg.hidden_size,
        "mlp": cfg.intermediate_size,
    }
    row["params"] = sum(p.numel() for p in model.parameters())
    hf_dir = work / name / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    save_model(model, tok, hf_dir)
    t0 = time.perf_counter()
    out = export_for_ollama(hf_dir, work / name / "gguf", name=name)
    row["export_s"] = round(time.perf_counter() - t0, 1)
    row["files_mb"] = {t: round(p.stat().st_size / 1e6, 1) for t, p in out.gguf.items()}
    heldout = read_texts(Path(args.data) / "heldout.jsonl")
    ppl_texts, logit_texts = heldout[: args.ppl_texts], heldout[-args.logit_texts :]
    ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    row["ppl_hf"] = perplexity(ref, tok, ppl_texts, max_length=args.seq_len).perplexity
    row["hf_speed"] = _hf_speed(ref, tok, heldout[-1], args)
    row["logits"] = {}
    for outtype, path in out.gguf.items():
        g = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        ).eval()
        row["logits"][outtype] = _logit_stats(ref, g, tok, logit_texts, args.seq_len)
        if outtype == "q8_0":
            row["ppl_q8_0"] = perplexity(g, tok, ppl_texts, max_length=args.seq_len).perplexity
        del g
    say(f"[{name}] {json.dumps({k: row[k] for k in ('files_mb', 'ppl_hf', 'ppl_q8_0')})}")
    if args.llama_python:
        run_llama_cpp(row, out.gguf["q8_0"], args, say)
    shutil.rmtree(hf_dir)
    if not args.keep:
        shutil.rmtree(work / name / "gguf")
    return row


def run_llama_cpp(row: dict, gguf_path: Path, args, say) -> None:
    """llama.cpp's own numbers for one q8_0 file, in a subprocess with --llama-python."""
    runner = Path(__file__).with_name("llama_cpp_run.py")
    cmd = [
        args.llama_python,
        str(runner),
        str(gguf_path),
        "--threads",
        str(args.threads),
        "--texts",
        str(Path(args.data) / "heldout.jsonl"),
        "--ppl-texts",
        str(args.llama_ppl_texts),
        "--seq-len",
        str(args.seq_len),
        "--gen-tokens",
        str(args.gen_tokens),
        "--repeats",
        str(args.repeats),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        row["llama_cpp"] = {"error": proc.stderr.strip()[-800:]}
    else:
        row["llama_cpp"] = json.loads(proc.stdout.strip().splitlines()[-1])
    say(f"[{row['row']}] llama.cpp {row['llama_cpp']}")


def format_table(rows: list[dict]) -> str:
    head = (
        "| row | layers/heads/kv/head_dim/hidden/mlp | params | f16 MB | q8_0 MB | f16 max/mean abs dlogit | "
        "q8_0 max/mean abs dlogit, top1 agree | ppl HF | ppl q8_0 (transformers) | ppl q8_0 (llama.cpp) | "
        "llama.cpp prompt tok/s | gen tok/s | gen speed vs dense | HF (PyTorch f32) prompt / gen tok/s |"
    )
    lines = [head, "|" + "---|" * 14]
    dense_gen = next(
        (r.get("llama_cpp", {}).get("gen_tok_s") for r in rows if r["row"] == "dense"), None
    )
    for r in rows:
        s = r["shape"]
        lc = r.get("llama_cpp") or {}
        f16, q8 = r["logits"].get("f16", {}), r["logits"].get("q8_0", {})
        gen = lc.get("gen_tok_s")
        lines.append(
            f"| {r['row']} | {s['layers']}/{s['heads']}/{s['kv_heads']}/{s['head_dim']}/{s['hidden']}/{s['mlp']} | "
            f"{r['params'] / 1e6:.1f}M | {r['files_mb'].get('f16', '-')} | {r['files_mb'].get('q8_0', '-')} | "
            f"{f16.get('max_abs', 0):.3f} / {f16.get('mean_abs', 0):.4f} | "
            f"{q8.get('max_abs', 0):.3f} / {q8.get('mean_abs', 0):.4f}, {q8.get('top1_agree', 0):.3f} | "
            f"{r['ppl_hf']:.2f} | {r.get('ppl_q8_0', float('nan')):.2f} | "
            f"{lc.get('ppl', float('nan')):.2f} | {lc.get('prompt_tok_s', float('nan')):.0f} | "
            f"{gen if gen is not None else float('nan'):.1f} | "
            f"{(gen / dense_gen) if gen and dense_gen else float('nan'):.2f}x | "
            f"{r.get('hf_speed', {}).get('prompt_tok_s', float('nan')):.0f} / {r.get('hf_speed', {}).get('gen_tok_s', float('nan')):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=str(CACHE / "models/smollm2-135m-instruct"))
    p.add_argument("--data", default=str(CACHE / "data"))
    p.add_argument("--rows", nargs="*", default=DEFAULT_ROWS)
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--ppl-texts", type=int, default=20)
    p.add_argument("--logit-texts", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--llama-python", help="a Python with llama-cpp-python, to run the files with llama.cpp"
    )
    p.add_argument("--llama-ppl-texts", type=int, default=20)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", default="/tmp/medprune-serving-bench")
    p.add_argument("--keep", action="store_true", help="keep the GGUF files under --work")
    p.add_argument("--json", help="write the rows here (after every row)")
    p.add_argument(
        "--llama-only",
        action="store_true",
        help="add llama.cpp numbers to the rows of an earlier --json run made with --keep",
    )
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.llama_only:
        data = json.loads(Path(args.json).read_text())
        for row in data["rows"]:
            run_llama_cpp(row, work / row["row"] / "gguf" / f"{row['row']}-q8_0.gguf", args, say)
        data["args"]["llama_python"] = args.llama_python
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(format_table(data["rows"]))
        return 0
    from medprune.io.atomic import atomic_write_text

    from run_info import results_path, run_info

    info = run_info(args.threads)
    info["settings"] = vars(args)
    json_path = results_path(args.json, "serving", info) if args.json else None
    rows: list[dict] = []
    for spec in args.rows:
        rows.append(run_row(spec, args, work, say))
        if json_path:
            done = len(rows) == len(args.rows)
            doc = {"run": {**info, "complete": done}, "args": vars(args), "rows": rows}
            atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
    if json_path:
        say(f"results: {json_path}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
