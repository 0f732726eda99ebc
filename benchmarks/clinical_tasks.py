"""Clinical-task benchmark: what pruning does to PubMedQA and to visit-note summarization.

The dense model and each pruned row (default: Wanda 50% unstructured, width -25%), each
recovered with distillation from the dense model for the same small budget, are evaluated
on identical items:

* PubMedQA (``.cache/medprune/data/pubmedqa_dev.json``, the 500 expert-labelled items
  outside the official test split; MIT): accuracy, macro-F1, the always-majority baseline,
  with lm-evaluation-harness's own prompt;
* ACI-BENCH valid (``.cache/medprune/data/aci_valid.json``, 20 visit dialogues with
  their notes; CC BY 4.0): ROUGE-1/2/Lsum, section coverage, hallucination and omission
  rates, generated greedily with the model's chat template.

Each row also gets paired 95% bootstrap intervals against the dense model (PubMedQA
correctness, per-note ROUGE-Lsum). Recovery trains on the built-in ontology text
(``medprune build-data``), which is a different source from both tasks here::

    nice -n 10 python benchmarks/clinical_tasks.py --pubmedqa-items 100 --dialogues 5 --json out.json

Both data sets are read from the paths given (default: the copies ``medprune build-data``
writes from the ones bundled in ``src/medprune/data/sources/``); nothing is downloaded. The JSON (one object per model) is rewritten after every row, so an
interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from medprune.evaluate.metrics import NOTE_METRICS as _NOTE_METRICS

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(".cache/medprune")
DEFAULT_ROWS = ["wanda-50=wanda:0.5", "width-25=width:0.25"]
#: Per-note scores compared with the dense model's, note by note (paired bootstrap): the
#: evaluation's visit-note metrics but the reference's own hallucination rate, which does not
#: depend on the model.
NOTE_METRICS = tuple(m for m in _NOTE_METRICS if m != "reference_hallucination_rate")


def eval_config(args):
    from medprune.config import EvaluateConfig, MCQSourceConfig, VisitNotesConfig

    return EvaluateConfig(
        mcq_sources=[
            MCQSourceConfig(name="pubmedqa", data=args.pubmedqa, max_items=args.pubmedqa_items)
        ],
        visit_notes=VisitNotesConfig(
            data=args.aci,
            max_items=args.dialogues,
            max_new_tokens=args.max_new_tokens,
            max_input_tokens=args.max_input_tokens,
            batch_size=args.note_batch,
        ),
        batch_size=8,
        seq_len=1024,
        latency_repeats=2,
        latency_seq_len=64,
    )


def summarize(results: dict, eval_dir: Path) -> dict:
    """The numbers a row reports, from an evaluation's results."""
    pubmed = results["mcq_sources"]["pubmedqa"]
    notes = results["visit_notes"]
    return {
        "pubmedqa_acc": pubmed["acc"],
        "pubmedqa_macro_f1": pubmed["classes"]["macro_f1"],
        "pubmedqa_majority_baseline": pubmed["classes"]["majority_baseline"],
        "pubmedqa_per_class_f1": {k: v["f1"] for k, v in pubmed["classes"]["per_class"].items()},
        "pubmedqa_items": pubmed["n"],
        **{
            f"notes_{k}": notes[k]
            for k in (
                "rouge1",
                "rouge2",
                "rougeLsum",
                "section_coverage",
                "hallucination_rate",
                "omission_rate",
                "reference_hallucination_rate",
                "mean_new_tokens",
                "budget_hits",
                "truncated_items",
                "n",
            )
        },
        "nonzero_params": results["efficiency"]["nonzero_params"],
        "total_params": results["efficiency"]["total_params"],
        "eval_dir": str(eval_dir),
        "eval_seconds": results["eval_seconds"],
    }


def paired_against_dense(dense_dir: Path, row_dir: Path) -> dict:
    """Paired 95% bootstrap intervals (row - dense) for PubMedQA correctness and ROUGE-Lsum."""
    from medprune.evaluate.runner import NOTES_FILE, read_predictions, source_predictions_file
    from medprune.gate.stats import paired_bootstrap_ci, paired_bootstrap_mean_ci

    out = {}
    d, r = (read_predictions(x, source_predictions_file("pubmedqa")) for x in (dense_dir, row_dir))
    ids = sorted(p["id"] for p in d)
    dm, rm = {p["id"]: p["correct"] for p in d}, {p["id"]: p["correct"] for p in r}
    ci = paired_bootstrap_ci([dm[i] for i in ids], [rm[i] for i in ids], seed=0)
    out["pubmedqa_acc_diff"] = ci.difference
    out["pubmedqa_acc_diff_ci95"] = [ci.lower, ci.upper]
    dn, rn = (read_predictions(x, NOTES_FILE) for x in (dense_dir, row_dir))
    for metric in NOTE_METRICS:
        dm2, rm2 = {p["id"]: p[metric] for p in dn}, {p["id"]: p[metric] for p in rn}
        ids = sorted(dm2)
        ci = paired_bootstrap_mean_ci([dm2[i] for i in ids], [rm2[i] for i in ids], seed=0)
        out[f"notes_{metric}_diff"] = ci.difference
        out[f"notes_{metric}_diff_ci95"] = [ci.lower, ci.upper]
    return out


def _same_evaluation(cached: dict | None, settings: dict) -> bool:
    """Whether a finished evaluation was made with these settings (the prompt and vocabulary
    hashes it adds depend only on these settings, the data and the tokenizer)."""
    if not cached or not cached.get("complete"):
        return False
    old = json.loads(json.dumps(cached["settings"]))
    for key in ("prompts_sha256", "concept_vocabulary_sha256"):
        (old.get("visit_notes") or {}).pop(key, None)
    return old == settings


def run_row(name: str, spec: str, args, dense_dir: Path, work: Path, say) -> dict:
    from medprune.config import PruneConfig, RunConfig
    from medprune.evaluate.runner import evaluate_model
    from medprune.io.jsonl import read_texts
    from medprune.load.model import load_model, save_model
    from medprune.prune.engine import prune_model
    from medprune.recover.stage import stage_recover

    method, sparsity = spec.split(":")[0], float(spec.split(":")[1])
    pcfg = PruneConfig(
        method=method,
        sparsity=sparsity,
        calibration={"data": args.recovery_data, "num_samples": args.calib_samples, "seq_len": 256},
    )
    pruned_dir = work / f"{name}-pruned"
    spec_file = work / f"{name}-prune-spec.json"
    spec_now = {"dense": str(Path(dense_dir).resolve()), "prune": pcfg.model_dump(mode="json")}
    reuse = (
        (pruned_dir / "medprune_complete.json").is_file()
        and spec_file.is_file()
        and json.loads(spec_file.read_text()) == spec_now
    )
    for old in work.glob(f"{name}-*"):
        if not (reuse and old in (pruned_dir, spec_file)):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    prune_s = None
    if reuse:  # same dense model and pruning settings: pruning is deterministic
        say(f"[{name}] reusing the pruned model in {pruned_dir}")
    else:
        model, tok = load_model(dense_dir)
        t0 = time.perf_counter()
        model = prune_model(model, tok, pcfg, calib_texts=read_texts(args.recovery_data)).model
        prune_s = time.perf_counter() - t0
        save_model(model, tok, pruned_dir)
        spec_file.write_text(json.dumps(spec_now))
        del model
    ecfg = eval_config(args)
    cfg = RunConfig(
        seed=0,
        model={"source": str(dense_dir), "dtype": "float32"},
        prune=pcfg,
        evaluate=ecfg,
        recover={
            "data": args.recovery_data,
            "steps": args.recover_steps,
            "max_minutes": args.recover_minutes,
            "budget_clock": args.budget_clock,
            "lr": args.lr,
            "schedule": "constant",
            "batch_size": 4,
            "seq_len": 128,
            "distill": {"enabled": True, "temperature": 2.0, "kl_weight": 1.0, "ce_weight": 0.5},
        },
    )
    rec_dir = work / f"{name}-recovered"
    c0 = time.process_time()
    report = stage_recover(cfg, pruned_dir, rec_dir, teacher_dir=dense_dir, progress=say)
    recover_cpu = time.process_time() - c0
    eval_dir = work / f"{name}-eval"
    c0 = time.process_time()
    results = evaluate_model(rec_dir, ecfg, eval_dir, label=name, progress=say)
    eval_cpu = time.process_time() - c0
    return {
        "row": name,
        "method": method,
        "sparsity_target": sparsity,
        "prune_seconds": prune_s,
        "recover_steps": report["steps"],
        "recover_minutes": report["seconds"] / 60,
        "recover_cpu_minutes": recover_cpu / 60,
        "eval_cpu_seconds": eval_cpu,
        **summarize(results, eval_dir),
        **paired_against_dense(work / "dense-eval", eval_dir),
    }


def _f(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown_table(rows: list[dict]) -> str:
    head = (
        "| model | PubMedQA acc | macro-F1 | acc diff vs dense (95% CI) | ROUGE-1 | ROUGE-2 | ROUGE-Lsum "
        "| Lsum diff vs dense (95% CI) | section coverage | hallucination rate | omission rate | recovery steps |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        ci_a = r.get("pubmedqa_acc_diff_ci95")
        ci_n = r.get("notes_rougeLsum_diff_ci95")
        lines.append(
            f"| {r['row']} | {_f(r['pubmedqa_acc'])} | {_f(r['pubmedqa_macro_f1'])} "
            f"| {'-' if not ci_a else f'[{ci_a[0]:+.3f}, {ci_a[1]:+.3f}]'} "
            f"| {_f(r['notes_rouge1'])} | {_f(r['notes_rouge2'])} | {_f(r['notes_rougeLsum'])} "
            f"| {'-' if not ci_n else f'[{ci_n[0]:+.3f}, {ci_n[1]:+.3f}]'} "
            f"| {_f(r['notes_section_coverage'])} | {_f(r['notes_hallucination_rate'])} | {_f(r['notes_omission_rate'])} "
            f"| {r.get('recover_steps', '-')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        default=str(CACHE / "models/smollm2-135m-instruct"),
        help="Dense model directory.",
    )
    p.add_argument("--pubmedqa", default=str(CACHE / "data/pubmedqa_dev.json"))
    p.add_argument("--aci", default=str(CACHE / "data/aci_valid.json"))
    p.add_argument("--recovery-data", default=str(CACHE / "data/recovery.jsonl"))
    p.add_argument(
        "--row", action="append", dest="rows", help=f"NAME=METHOD:SPARSITY (default {DEFAULT_ROWS})"
    )
    p.add_argument(
        "--pubmedqa-items", type=int, default=None, help="First N PubMedQA items (default all 500)."
    )
    p.add_argument(
        "--dialogues", type=int, default=None, help="First N ACI-BENCH dialogues (default all 20)."
    )
    p.add_argument("--max-new-tokens", type=int, default=384)
    p.add_argument("--max-input-tokens", type=int, default=2048)
    p.add_argument("--note-batch", type=int, default=4)
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--recover-steps", type=int, default=40)
    p.add_argument(
        "--recover-minutes", type=float, default=4.0, help="Recovery budget per row (minutes)."
    )
    p.add_argument(
        "--budget-clock",
        choices=["wall", "cpu"],
        default="wall",
        help="What --recover-minutes counts.",
    )
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    p.add_argument(
        "--work", default=None, help="Keep models and evaluations here (default: a temp dir)."
    )
    p.add_argument(
        "--json",
        default=None,
        help="Write the rows and how the run was made (commit, versions, command, machine, date) as "
        "JSON to this file, or into this folder (a path ending in /) as "
        "clinical-tasks-<date>-<commit>.json; rewritten after each row.",
    )
    args = p.parse_args(argv)

    import torch

    from medprune.evaluate.runner import evaluate_model, evaluation_settings
    from medprune.io.atomic import atomic_write_json
    from medprune.load.model import check_model_dir

    from run_info import results_path, run_info

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.pubmedqa, args.aci, args.recovery_data):
        if not Path(path).is_file():
            print(f"error: {path} not found (run `medprune build-data`)", file=sys.stderr)
            return 2
    dense_dir = check_model_dir(args.model)

    def say(msg: str) -> None:
        print(msg, flush=True)

    settings = {k: v for k, v in vars(args).items() if k not in ("json", "work")}
    info = run_info(torch.get_num_threads())  # after set_num_threads: the threads the rows use
    out = results_path(args.json, "clinical-tasks", info) if args.json else None
    with tempfile.TemporaryDirectory(prefix="medprune-clinical-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0, c0 = time.perf_counter(), time.process_time()
        ecfg = eval_config(args)
        cached = work / "dense-eval" / "results.json"
        dense = json.loads(cached.read_text()) if cached.is_file() else None
        if not _same_evaluation(dense, evaluation_settings(ecfg, "float32")):
            dense = evaluate_model(
                dense_dir, ecfg, work / "dense-eval", label="dense", progress=say
            )
        else:  # the dense model and the evaluation settings are unchanged
            say(f"[dense] reusing the evaluation in {cached.parent}")
        rows = [{"row": "dense", "method": "none", **summarize(dense, work / "dense-eval")}]

        def write_json(final: bool) -> None:
            doc = {"run": {**info, "complete": final}, "settings": settings, "rows": rows}
            doc["minutes"] = (time.perf_counter() - t0) / 60
            doc["cpu_minutes"] = (time.process_time() - c0) / 60
            atomic_write_json(out, doc)

        if out:
            write_json(final=False)
        for entry in args.rows or DEFAULT_ROWS:
            name, _, spec = entry.partition("=")
            rows.append(run_row(name, spec, args, dense_dir, work, say))
            say(markdown_table(rows))
            if out:  # partial results survive an interrupted run
                write_json(final=False)
        print(markdown_table(rows))
        print(
            f"total {(time.perf_counter() - t0) / 60:.1f} min wall, "
            f"{(time.process_time() - c0) / 60:.1f} min CPU"
        )
        if out:
            write_json(final=True)
            print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
