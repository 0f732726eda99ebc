"""Pruning benchmark: medprune against llmcompressor on one model, one table.

    python benchmarks/pruning.py                      # defaults under .cache/medprune/
    python benchmarks/pruning.py --model DIR --calibration C.jsonl --heldout H.jsonl \
        --mcq M.jsonl --json benchmarks/results/      # -> pruning-<date>-<commit>.json

Targets against llmcompressor in the same run: perplexity <= 1.02x theirs, pruning wall
time <= 0.6x theirs. The JSON records the commit, package versions, command line, machine
(CPU, cores, torch threads per row, load average) and date with the rows.

Every row runs in its own subprocess (so peak memory is that row's alone): load the dense
model (float32), prune, then measure held-out perplexity, MCQ accuracy (sum log-likelihood of
" " + option), parameters, size on disk (bf16 safetensors) and forward throughput on CPU.
Both tools get the very same calibration token ids. llmcompressor rows need the optional
``bench`` extra (``pip install -e '.[bench]'``); without it they are reported as skipped.

Peak memory: ``peak MB`` is the process's peak RSS while pruning (VmHWM, reset after
loading). ``peak/model`` is the memory pruning needs as a multiple of the dense model's size
in memory: (the dense model's bytes + the RSS growth above the loaded state) / the model's
bytes. So 1.0 means pruning needed nothing beyond the model itself; the tokenizer (~100 MB
for SmolLM2) and the code imported while loading do not count against pruning.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CACHE = Path(".cache/medprune")
PPL_TARGET = 1.02  # our perplexity / llmcompressor's, same method and sparsity
TIME_TARGET = 0.6  # our pruning wall time / llmcompressor's, in the same run

ROWS: list[dict] = [  # the rows the targets compare come first
    {"name": "dense", "tool": "none", "method": "dense"},
    {"name": "wanda 50%", "tool": "medprune", "method": "wanda", "sparsity": 0.5},
    {"name": "llmc wanda 50%", "tool": "llmcompressor", "method": "wanda", "sparsity": 0.5},
    {"name": "sparsegpt 50%", "tool": "medprune", "method": "sparsegpt", "sparsity": 0.5},
    {"name": "llmc sparsegpt 50%", "tool": "llmcompressor", "method": "sparsegpt", "sparsity": 0.5},
    # Two passes per layer (prune.calibration.passes: 2): what a tight memory budget gets.
    {
        "name": "wanda 50% two-pass",
        "tool": "medprune",
        "method": "wanda",
        "sparsity": 0.5,
        "passes": 2,
    },
    {
        "name": "sparsegpt 50% two-pass",
        "tool": "medprune",
        "method": "sparsegpt",
        "sparsity": 0.5,
        "passes": 2,
    },
    {"name": "width -50% params", "tool": "medprune", "method": "width", "sparsity": 0.5},
    {"name": "wanda 2:4", "tool": "medprune", "method": "wanda", "pattern": "2:4"},
    {"name": "llmc wanda 2:4", "tool": "llmcompressor", "method": "wanda", "pattern": "2:4"},
    {"name": "sparsegpt 2:4", "tool": "medprune", "method": "sparsegpt", "pattern": "2:4"},
    {
        "name": "llmc sparsegpt 2:4",
        "tool": "llmcompressor",
        "method": "sparsegpt",
        "pattern": "2:4",
    },
    {"name": "width -25% params", "tool": "medprune", "method": "width", "sparsity": 0.25},
    {"name": "depth -25% layers", "tool": "medprune", "method": "depth", "sparsity": 0.25},
    {"name": "magnitude 50%", "tool": "medprune", "method": "magnitude", "sparsity": 0.5},
    {"name": "magnitude 2:4", "tool": "medprune", "method": "magnitude", "pattern": "2:4"},
]

COLUMNS = [
    ("name", "row", "{}"),
    ("perplexity", "ppl", "{:.3f}"),
    ("mcq_accuracy", "mcq", "{:.3f}"),
    ("prune_time_s", "prune s", "{:.1f}"),
    ("prune_cpu_s", "prune CPU s", "{:.1f}"),
    ("peak_rss_mb", "peak MB", "{:.0f}"),
    ("peak_over_model", "peak/model", "{:.2f}"),
    ("params", "params", "{:,}"),
    ("nonzero_params", "nonzero", "{:,}"),
    ("size_on_disk_mb", "disk MB", "{:.1f}"),
    ("tokens_per_s", "tok/s", "{:.0f}"),
    ("speedup", "speedup", "{:.2f}"),
]


# ---------------------------------------------------------------- measurement helpers


def _rss_kb(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def calibration_ids(tokenizer, path: str, num_samples: int, seq_len: int):
    from medprune.prune.calibration import calibration_token_ids, load_calibration_texts

    return calibration_token_ids(tokenizer, load_calibration_texts(path), num_samples, seq_len)


def perplexity(model, tokenizer, texts: list[str], seq_len: int) -> float:
    import torch

    nll = 0.0
    count = 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=seq_len)[
                "input_ids"
            ]
            if ids.shape[1] < 2:
                continue
            logits = model(input_ids=ids).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return math.exp(nll / count)


def mcq_accuracy(model, tokenizer, items: list[dict]) -> float:
    """Pick the option with the highest summed log-likelihood as a continuation."""
    import torch

    correct = 0
    with torch.no_grad():
        for item in items:
            prompt = f"Question: {item['question']}\nAnswer:"
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            scores = []
            for option in item["options"]:
                o_ids = tokenizer(" " + option, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([p_ids + o_ids])
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                target = ids[0, 1:]
                tok = logp.gather(1, target.unsqueeze(1)).squeeze(1)
                scores.append(float(tok[len(p_ids) - 1 :].sum()))
            correct += int(max(range(len(scores)), key=scores.__getitem__) == item["answer"])
    return correct / len(items)


def throughput(model, batch: int = 2, seq_len: int = 256, repeats: int = 2) -> float:
    import torch

    ids = torch.randint(
        0, model.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        model(input_ids=ids)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            model(input_ids=ids)
            best = min(best, time.perf_counter() - t)
    return batch * seq_len / best


# ---------------------------------------------------------------- one row


def _prune_llmcompressor(model, tokenizer, ids, row: dict, batch_size: int) -> None:
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    cls = {"wanda": WandaPruningModifier, "sparsegpt": SparseGPTModifier}[row["method"]]
    pattern = row.get("pattern", "unstructured")
    modifier = cls(
        sparsity=0.5 if pattern != "unstructured" else row["sparsity"],
        mask_structure="0:0" if pattern == "unstructured" else pattern,
        targets=["Linear"],
        ignore=["re:.*lm_head"],
    )
    ds = Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * ids.shape[1]] * ids.shape[0]}
    )
    oneshot(
        model=model,
        tokenizer=tokenizer,
        dataset=ds,
        recipe=modifier,
        num_calibration_samples=ids.shape[0],
        max_seq_length=ids.shape[1],
        shuffle_calibration_samples=False,
        batch_size=batch_size,
        pipeline="sequential",
    )


def run_row(row: dict, args) -> dict:
    import torch

    from medprune.config import PruneConfig
    from medprune.io.jsonl import read_jsonl, read_texts
    from medprune.load.model import load_model, model_size_on_disk, save_model
    from medprune.prune.apply import sparsity_report
    from medprune.prune.engine import prune_model

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Import everything first, so that the memory baseline holds the libraries, not the model.
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import medprune.prune.engine  # noqa: F401

    if row["tool"] == "llmcompressor":
        import datasets  # noqa: F401
        import llmcompressor  # noqa: F401
        from llmcompressor.modifiers.pruning import SparseGPTModifier  # noqa: F401
    rss_before_load = _rss_kb()
    model, tokenizer = load_model(args.model, dtype="float32")
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ids = calibration_ids(tokenizer, args.calibration, args.num_samples, args.seq_len)
    rss_loaded = _rss_kb()
    out: dict = {"name": row["name"], "tool": row["tool"], "method": row["method"]}
    out["settings"] = {k: v for k, v in row.items() if k not in ("name", "tool", "method")}
    out["settings"].update(num_samples=args.num_samples, seq_len=args.seq_len)
    _reset_peak_rss()
    t = time.perf_counter()
    cpu = time.process_time()  # all threads of this process: stable on a busy machine
    if row["tool"] == "medprune":
        from medprune.prune.calibration import load_calibration_texts

        cfg = PruneConfig(
            method=row["method"],
            sparsity=row.get("sparsity", 0.5),
            pattern=row.get("pattern", "unstructured"),
            calibration={
                "num_samples": args.num_samples,
                "seq_len": args.seq_len,
                "batch_size": args.batch_size,
                "passes": row.get("passes", 1),
            },
        )
        result = prune_model(
            model,
            tokenizer,
            cfg,
            calib_texts=load_calibration_texts(args.calibration),
            device="cpu",
        )
        model = result.model
        out["report"] = {
            k: v
            for k, v in result.report.items()
            if k in ("sparsity", "param_ratio", "config", "removed_layers", "plan")
        }
    elif row["tool"] == "llmcompressor":
        _prune_llmcompressor(model, tokenizer, ids, row, args.batch_size)
    out["prune_time_s"] = time.perf_counter() - t if row["tool"] != "none" else 0.0
    out["prune_cpu_s"] = time.process_time() - cpu if row["tool"] != "none" else 0.0
    peak = _rss_kb("VmHWM")
    out["peak_rss_mb"] = peak / 1024
    out["rss_before_load_mb"] = rss_before_load / 1024
    out["rss_loaded_mb"] = rss_loaded / 1024
    out["model_mb"] = model_bytes / 2**20
    out["peak_over_model"] = (
        (model_bytes + (peak - rss_loaded) * 1024) / model_bytes if row["tool"] != "none" else None
    )
    model.eval()
    rep = sparsity_report(model)
    out["params"] = rep["total_params"]
    out["nonzero_params"] = rep["nonzero_params"]
    out["sparsity"] = rep["sparsity"]
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model.to(torch.bfloat16), tokenizer, Path(tmp) / "m")
        out["size_on_disk_mb"] = model_size_on_disk(Path(tmp) / "m") / 2**20
    model.to(torch.float32)
    heldout = read_texts(args.heldout)[: args.ppl_texts]
    try:  # the project's evaluator (batched); the small scorers below otherwise
        from medprune.evaluate.mcq import load_mcq, score_mcq
        from medprune.evaluate.perplexity import perplexity as project_perplexity

        out["perplexity"] = project_perplexity(
            model, tokenizer, heldout, max_length=args.eval_seq_len
        ).perplexity
        out["mcq_accuracy"] = score_mcq(model, tokenizer, load_mcq(args.mcq, args.mcq_items)).acc
        out["evaluator"] = "medprune.evaluate"
    except ImportError:
        out["perplexity"] = perplexity(model, tokenizer, heldout, args.eval_seq_len)
        items = [r for _, r in read_jsonl(args.mcq)][: args.mcq_items]
        out["mcq_accuracy"] = mcq_accuracy(model, tokenizer, items)
        out["evaluator"] = "benchmark"
    out["tokens_per_s"] = throughput(model, args.tput_batch, args.tput_seq_len)
    return out


# ---------------------------------------------------------------- driver


def format_table(rows: list[dict]) -> str:
    def cell(row, key, fmt):
        v = row.get(key)
        if v is None:
            return row.get("skipped", "-") if key == "perplexity" else "-"
        return fmt.format(v)

    header = [title for _, title, _ in COLUMNS]
    body = [[cell(r, k, f) for k, _, f in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    by = {r["name"]: r for r in rows if "perplexity" in r}
    lines = []
    for ours in by.values():
        if ours.get("tool") != "medprune" or ours.get("method") not in ("wanda", "sparsegpt"):
            continue
        # llmcompressor's row of the same method and settings (it has no two-pass option)
        same = {k: v for k, v in ours.get("settings", {}).items() if k != "passes"}
        theirs = next(
            (
                r
                for r in by.values()
                if r.get("tool") == "llmcompressor"
                and r.get("method") == ours["method"]
                and r.get("settings") == same
            ),
            None,
        )
        if theirs is None:
            continue
        ppl = ours["perplexity"] / theirs["perplexity"]
        tm = ours["prune_time_s"] / theirs["prune_time_s"]
        cpu_ratio = (
            ours["prune_cpu_s"] / theirs["prune_cpu_s"]
            if ours.get("prune_cpu_s") and theirs.get("prune_cpu_s")
            else None
        )
        lines.append(
            f"{ours['name']}: ppl ratio {ppl:.4f} (target <= {PPL_TARGET}: "
            f"{'met' if ppl <= PPL_TARGET else 'NOT met'}), time ratio {tm:.2f} "
            f"(target <= {TIME_TARGET}: {'met' if tm <= TIME_TARGET else 'NOT met'})"
            + (f", CPU time ratio {cpu_ratio:.2f}" if cpu_ratio is not None else "")
        )
    mem = [r for r in rows if r.get("tool") == "medprune" and r.get("peak_over_model") is not None]
    if mem:
        worst = max(mem, key=lambda r: r["peak_over_model"])
        over = [
            f"{r['name']} {r['peak_over_model']:.2f}x" for r in mem if r["peak_over_model"] > 1.5
        ]
        lines.append(
            f"peak memory while pruning: worst {worst['peak_over_model']:.2f}x the dense model ({worst['name']}); "
            f"target <= 1.5: {'met' if not over else 'NOT met by ' + ', '.join(over)}"
        )
    half = by.get("width -50% params")
    if half and by.get("dense"):
        s = half["tokens_per_s"] / by["dense"]["tokens_per_s"]
        lines.append(
            f"width -50% params: {s:.2f}x dense throughput (target >= 1.7: {'met' if s >= 1.7 else 'NOT met'})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(CACHE / "models/smollm2-135m-instruct"))
    p.add_argument("--calibration", default=str(CACHE / "data/calibration.jsonl"))
    p.add_argument("--heldout", default=str(CACHE / "data/heldout.jsonl"))
    p.add_argument("--mcq", default=str(CACHE / "data/mcq.jsonl"))
    p.add_argument(
        "--json",
        default=None,
        help="Also write the run (commit, versions, command, machine, date), the rows and the "
        "targets as JSON to this file, or into this directory (a trailing '/' or an existing "
        "directory) as pruning-<date>-<commit>.json: one file per run.",
    )
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="Calibration batch size (both tools).")
    p.add_argument("--ppl-texts", type=int, default=50)
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--mcq-items", type=int, default=100)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per row (0: torch default). One is fastest on a small shared machine.",
    )
    p.add_argument("--tput-batch", type=int, default=2, help="Throughput: sequences per forward.")
    p.add_argument("--tput-seq-len", type=int, default=256, help="Throughput: tokens per sequence.")
    p.add_argument("--only", default=None, help="Comma-separated row names to run (default: all).")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="Rows run at the same time (each its own process with --threads threads). On a "
        "busy shared machine, running a method's two tools side by side gives them the same "
        "conditions; compare prune CPU seconds as well as wall time.",
    )
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # internal: run one row
    p.add_argument("--row-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.row:
        result = run_row(json.loads(args.row), args)
        Path(args.row_out).write_text(json.dumps(result))
        return 0

    for path in (args.model, args.calibration, args.heldout, args.mcq):
        if not Path(path).exists():
            p.error(f"{path} not found (see --help for the inputs)")
    rows = ROWS
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        rows = [r for r in ROWS if r["name"] in wanted or r["name"] == "dense"]
    try:
        import llmcompressor  # noqa: F401

        have_llmc = True
    except ImportError:
        have_llmc = False
    from run_info import results_path, run_info

    info = run_info(args.threads)
    info["settings"] = {
        k: getattr(args, k)
        for k in (
            "model",
            "calibration",
            "heldout",
            "mcq",
            "num_samples",
            "seq_len",
            "batch_size",
            "ppl_texts",
            "eval_seq_len",
            "mcq_items",
            "tput_batch",
            "tput_seq_len",
            "only",
            "jobs",
        )
    }
    json_path = results_path(args.json, "pruning", info) if args.json else None
    results = []

    def write_json(final: bool) -> None:
        from medprune.io.atomic import atomic_write_text

        doc = {"run": {**info, "complete": final}, "rows": results, "targets": targets(results)}
        atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")

    passthrough = [
        f"--model={args.model}",
        f"--calibration={args.calibration}",
        f"--heldout={args.heldout}",
        f"--mcq={args.mcq}",
        f"--num-samples={args.num_samples}",
        f"--seq-len={args.seq_len}",
        f"--batch-size={args.batch_size}",
        f"--ppl-texts={args.ppl_texts}",
        f"--eval-seq-len={args.eval_seq_len}",
        f"--mcq-items={args.mcq_items}",
        f"--threads={args.threads}",
        f"--tput-batch={args.tput_batch}",
        f"--tput-seq-len={args.tput_seq_len}",
    ]

    def run_one(row: dict) -> dict:
        if row["tool"] == "llmcompressor" and not have_llmc:
            return {
                "name": row["name"],
                "tool": row["tool"],
                "method": row["method"],
                "skipped": "no llmcompressor",
            }
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            out_path = fh.name
        t = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                *passthrough,
                "--row",
                json.dumps(row),
                "--row-out",
                out_path,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            print(f"[{row['name']}] FAILED: {' / '.join(tail)}", file=sys.stderr)
            return {
                "name": row["name"],
                "tool": row["tool"],
                "method": row["method"],
                "skipped": "failed",
                "error": " / ".join(tail),
            }
        out = json.loads(Path(out_path).read_text())
        os.unlink(out_path)
        print(
            f"[{row['name']}] done in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True
        )
        return out

    # Rows run in their own processes, --jobs at a time; results keep the table's order.
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for out in pool.map(run_one, rows):
            results.append(out)
            if json_path:  # partial results survive an interrupted run
                write_json(final=False)
    dense = next((r for r in results if r["name"] == "dense" and "tokens_per_s" in r), None)
    for r in results:
        if dense and "tokens_per_s" in r:
            r["speedup"] = r["tokens_per_s"] / dense["tokens_per_s"]
    print(format_table(results))
    for line in targets(results):
        print(line)
    if json_path:
        write_json(final=True)
        print(f"wrote {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
