"""Recovery benchmark: how much of the pruning loss does recover-finetune win back?

For each row (a pruning setting) it prunes the dense model, evaluates it, recovers it with
distillation from the dense model for a fixed CPU budget, evaluates again, and reports
perplexity and MCQ accuracy before pruning, after pruning and after recovery, the share of
each gap recovered, and the sparsity before and after recovery::

    python benchmarks/recovery.py --model /tmp/smollm2 --budget-minutes 10 --json out.json

Rows are ``NAME=METHOD:SPARSITY[:PATTERN]``; the defaults are Wanda 50% and structured
(width) 25%. A row whose method this build does not have is reported as skipped.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ROWS = ["wanda-50=wanda:0.5:unstructured", "width-25=width:0.25"]
CACHE = Path(".cache/medprune")


def _prune(model, tokenizer, pcfg, calib_texts):
    """Call the pruning engine in either of its forms (with or without calibration)."""
    from medprune.prune.engine import prune_model

    if "calib_texts" in inspect.signature(prune_model).parameters:
        return prune_model(model, tokenizer, pcfg, calib_texts=calib_texts).model
    prune_model(model, pcfg)
    return model


def _metrics(results: dict) -> dict:
    return {
        "perplexity": results["perplexity"]["perplexity"] if results.get("perplexity") else None,
        "accuracy": results["mcq"]["acc"] if results.get("mcq") else None,
    }


def gap_recovered(dense: float, pruned: float, recovered: float) -> float | None:
    """Share of the (pruned - dense) gap won back: 1.0 means back to dense, 0 means no gain.
    For accuracy (higher is better) the same formula holds with the signs flipped."""
    gap = pruned - dense
    if abs(gap) < 1e-12:
        return None
    return (pruned - recovered) / gap


def run_row(name: str, spec: str, args, dense_dir: Path, dense: dict, work: Path, say) -> dict:
    from medprune.config import PruneConfig, RunConfig
    from medprune.errors import PruneError
    from medprune.evaluate.runner import evaluate_model
    from medprune.io.jsonl import read_texts
    from medprune.load.model import load_model, save_model
    from medprune.prune.apply import sparsity_report
    from medprune.prune.methods import METHODS
    from medprune.recover.stage import stage_recover

    parts = spec.split(":")
    method, sparsity = parts[0], float(parts[1])
    pattern = parts[2] if len(parts) > 2 else "unstructured"
    row = {"row": name, "method": method, "sparsity_target": sparsity, "pattern": pattern}
    if method not in METHODS:
        say(f"[{name}] skipped: pruning method {method!r} is not in this build ({sorted(METHODS)})")
        return {**row, "skipped": f"method {method!r} not available"}
    pcfg_fields = {"method": method, "sparsity": sparsity, "pattern": pattern}
    if "calibration" in PruneConfig.model_fields:
        pcfg_fields["calibration"] = {
            "data": args.recovery_data,
            "num_samples": args.calib_samples,
            "seq_len": args.seq_len,
        }
    pcfg = PruneConfig(**pcfg_fields)
    for old in work.glob(f"{name}-*"):  # a rerun in the same --work starts this row afresh
        shutil.rmtree(old)
    model, tok = load_model(dense_dir, dtype="float32")
    t0 = time.perf_counter()
    try:
        model = _prune(model, tok, pcfg, read_texts(args.recovery_data))
    except PruneError as exc:
        return {**row, "skipped": str(exc)}
    prune_s = time.perf_counter() - t0
    pruned_dir = work / f"{name}-pruned"
    save_model(model, tok, pruned_dir)
    before = sparsity_report(model, pcfg.exclude)
    params_pruned = before["total_params"]
    del model
    ecfg = _eval_cfg(args)
    pruned = _metrics(
        evaluate_model(
            pruned_dir, ecfg, work / f"{name}-eval-pruned", label=f"{name}-pruned", progress=say
        )
    )
    cfg = RunConfig(
        seed=args.seed,
        model={"source": str(dense_dir), "dtype": "float32"},
        prune=pcfg,
        evaluate=ecfg,
        recover={
            "data": args.recovery_data,
            "steps": args.max_steps,
            "max_minutes": args.budget_minutes,
            "budget_clock": args.budget_clock,
            "lr": args.lr,
            "warmup_steps": 5,
            "schedule": "constant",
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "distill": {
                "enabled": True,
                "temperature": args.temperature,
                "kl_weight": 1.0,
                "ce_weight": args.ce_weight,
            },
            "log_every": 10,
        },
    )
    rec_dir = work / f"{name}-recovered"
    report = stage_recover(cfg, pruned_dir, rec_dir, teacher_dir=dense_dir, progress=say)
    recovered = _metrics(
        evaluate_model(
            rec_dir, ecfg, work / f"{name}-eval-recovered", label=f"{name}-recovered", progress=say
        )
    )
    return {
        **row,
        "params_dense": dense["params"],
        "params_pruned": params_pruned,
        "sparsity_after_prune": before["sparsity"],
        "sparsity_after_recover": report["sparsity_after"],
        "ppl_dense": dense["perplexity"],
        "ppl_pruned": pruned["perplexity"],
        "ppl_recovered": recovered["perplexity"],
        "ppl_gap_recovered": gap_recovered(
            dense["perplexity"], pruned["perplexity"], recovered["perplexity"]
        ),
        "acc_dense": dense["accuracy"],
        "acc_pruned": pruned["accuracy"],
        "acc_recovered": recovered["accuracy"],
        "acc_gap_recovered": gap_recovered(
            dense["accuracy"], pruned["accuracy"], recovered["accuracy"]
        ),
        "recover_steps": report["steps"],
        "recover_minutes": report["seconds"] / 60,
        "recover_tokens_per_s": report["tokens_per_second"],
        "prune_seconds": prune_s,
    }


def _eval_cfg(args):
    from medprune.config import EvaluateConfig

    return EvaluateConfig(
        mcq=args.mcq,
        perplexity=args.heldout,
        batch_size=8,
        seq_len=256,
        max_items=args.max_mcq,
        max_ppl_texts=args.max_ppl_texts,
    )


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{100 * v:.0f}%" if pct else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def markdown_table(rows: list[dict]) -> str:
    head = "| row | sparsity (pruned -> recovered) | ppl dense / pruned / recovered | ppl gap recovered | acc dense / pruned / recovered | acc gap recovered | steps (wall min) |"
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['row']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(
            f"| {r['row']} | {r['sparsity_after_prune']:.4f} -> {r['sparsity_after_recover']:.4f} "
            f"| {_fmt(r['ppl_dense'])} / {_fmt(r['ppl_pruned'])} / {_fmt(r['ppl_recovered'])} | {_fmt(r['ppl_gap_recovered'], True)} "
            f"| {_fmt(r['acc_dense'])} / {_fmt(r['acc_pruned'])} / {_fmt(r['acc_recovered'])} | {_fmt(r['acc_gap_recovered'], True)} "
            f"| {r['recover_steps']} ({r['recover_minutes']:.1f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        default=str(CACHE / "models/smollm2-135m-instruct"),
        help="Dense model directory (safetensors).",
    )
    p.add_argument("--recovery-data", default=str(CACHE / "data/recovery.jsonl"))
    p.add_argument("--heldout", default=str(CACHE / "data/heldout.jsonl"))
    p.add_argument("--mcq", default=str(CACHE / "data/mcq.jsonl"))
    p.add_argument(
        "--row",
        action="append",
        dest="rows",
        help=f"NAME=METHOD:SPARSITY[:PATTERN] (default {DEFAULT_ROWS})",
    )
    p.add_argument("--budget-minutes", type=float, default=10.0, help="Recovery time per row.")
    p.add_argument(
        "--budget-clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="CPU time (default) or wall time.",
    )
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--ce-weight", type=float, default=0.5)
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--max-mcq", type=int, default=None)
    p.add_argument("--max-ppl-texts", type=int, default=None)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch default). The budget counts CPU time of all threads.",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work", default=None, help="Keep intermediate models here (default: a temp dir)."
    )
    p.add_argument(
        "--json",
        default=None,
        help="Also write the rows and how the run was made (commit, versions, command, machine, "
        "date) as JSON to this file, or into this folder (a path ending in /) as "
        "recovery-<date>-<commit>.json: one file per run.",
    )
    args = p.parse_args(argv)

    import torch

    from medprune.evaluate.runner import evaluate_model
    from medprune.io.atomic import atomic_write_json
    from medprune.load.model import check_model_dir

    from run_info import results_path, run_info

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.recovery_data, args.heldout, args.mcq):
        if not Path(path).is_file():
            print(
                f"error: {path} not found (run `medprune fetch-default` and `medprune build-data`, or pass the path)",
                file=sys.stderr,
            )
            return 2
    dense_dir = check_model_dir(args.model)
    info = run_info(torch.get_num_threads())  # after set_num_threads: the threads the rows use
    out = results_path(args.json, "recovery", info) if args.json else None

    def write_json(final: bool) -> None:
        atomic_write_json(out, {"run": {**info, "complete": final}, "rows": rows})

    def say(msg: str) -> None:
        print(msg, flush=True)

    with tempfile.TemporaryDirectory(prefix="medprune-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        cached = work / "eval-dense" / "results.json"
        if args.work and cached.is_file():  # the dense model does not change between runs
            dense_results = json.loads(cached.read_text())
        else:
            dense_results = evaluate_model(
                dense_dir, _eval_cfg(args), work / "eval-dense", label="dense", progress=say
            )
        dense = _metrics(dense_results)
        dense["params"] = dense_results.get("efficiency", {}).get("total_params")
        rows = []
        for entry in args.rows or DEFAULT_ROWS:
            name, _, spec = entry.partition("=")
            rows.append(run_row(name, spec, args, dense_dir, dense, work, say))
            say(markdown_table(rows))
            if out:  # partial results survive an interrupted run
                write_json(final=False)
    print(markdown_table(rows))
    if out:
        write_json(final=True)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
