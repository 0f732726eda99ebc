"""Retention benchmark: what does a pruned and recovered model keep of what the dense model
knew, on clinical sources that recovery never saw?

For each pruning row and each recovery recipe (at the same CPU budget) it prunes the dense
model with the product's prune stage, recovers it with the product's recover stage, and
evaluates it with the product's evaluator on every source:

- ``builtin``: the built-in set (``mcq.jsonl``; HPO / ICD-10-CM, the recovery text's source),
- ``wordnet-medical``: WordNet's medical glosses (``mcq_wordnet.jsonl``; the certification
  source of the demo and examples: reported here, never used to choose a default),
- ``drug-brands``: brand -> generic (``mcq_drugs.jsonl``; the retention-only source),
- ``pubmedqa``: PubMedQA's expert-labelled items, when the file is given (yes / no / maybe).

Per source: accuracy, the paired 95% interval of the difference to dense (exact McNemar),
discordant counts (only dense right / only candidate right), macro-F1 where the labels are
fixed, and the retained share of dense's accuracy above chance, (acc - chance) / (dense -
chance), the issue's measure of knowledge kept. A source whose dense accuracy is within its
interval of chance is marked uninformative: no retained share is computed on it.

Recipes (``--recipe``): ``none`` (pruned, not recovered), ``domain`` (distillation on
recover.data, the product's default), ``teacher`` (distillation on text the dense teacher
writes, ``recover.teacher_data`` with mix 1), ``mix`` (half and half), each optionally
``lora-`` prefixed (LoRA adapters instead of full fine-tuning) and optionally ``+hidden``
suffixed (intermediate-layer distillation too, ``recover.distill.hidden_weight`` =
``--hidden-weight``, default 1.0; e.g. ``domain+hidden``, ``lora-mix+hidden``; each result row
says its ``hidden_weight``). The teacher's text is
generated once (cached by the product's cache) and its CPU time is reported apart: it is
paid once per teacher, not per candidate::

    python benchmarks/retention.py --row width-25=width:0.25 --recipe domain --recipe teacher \\
        --budget-minutes 5 --json benchmarks/results/
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE = Path(".cache/medprune")
DEFAULT_ROWS = ["width-25=width:0.25", "wanda-50=wanda:0.5"]
DEFAULT_RECIPES = ["none", "domain", "teacher", "mix"]
RECIPES = ("none", "domain", "teacher", "mix")


@dataclass(frozen=True)
class SourceScore:
    """One model on one source, against the dense model on the same items."""

    source: str
    n: int
    accuracy: float
    dense_accuracy: float
    chance: float
    difference: float
    lower: float
    upper: float
    dense_only: int
    candidate_only: int
    macro_f1: float | None
    informative: bool
    retained: float | None


def retained_share(acc: float, dense: float, chance: float) -> float | None:
    """Share of dense's accuracy above chance that the candidate keeps: 1 is all of it,
    0 is none (chance level); None when dense itself is not above chance."""
    if dense <= chance:
        return None
    return (acc - chance) / (dense - chance)


def dense_is_informative(correct: list[bool], chance: float, confidence: float = 0.95) -> bool:
    """Dense's accuracy interval (Clopper-Pearson) lies above the chance rate."""
    from medprune.gate.stats import clopper_pearson

    lo, _ = clopper_pearson(sum(correct), len(correct), confidence)
    return lo > chance


def chance_rate(predictions: list[dict]) -> float:
    """The expected accuracy of guessing: the mean of 1 / number of options (PubMedQA's
    always-majority rate is reported beside it by the evaluator)."""
    return sum(1 / len(p["options"]) for p in predictions) / len(predictions)


def score_source(
    name: str, dense: list[dict], cand: list[dict], macro_f1: float | None
) -> SourceScore:
    from medprune.gate.stats import mcnemar_exact_ci

    by_id = {p["id"]: p for p in cand}
    if set(by_id) != {p["id"] for p in dense}:
        raise ValueError(f"{name}: the dense and candidate evaluations have different items")
    base = [bool(p["correct"]) for p in dense]
    new = [bool(by_id[p["id"]]["correct"]) for p in dense]
    ci = mcnemar_exact_ci(base, new, confidence=0.95)
    chance = chance_rate(dense)
    dense_acc = sum(base) / len(base)
    acc = sum(new) / len(new)
    informative = dense_is_informative(base, chance)
    return SourceScore(
        source=name,
        n=len(base),
        accuracy=acc,
        dense_accuracy=dense_acc,
        chance=chance,
        difference=ci.difference,
        lower=ci.lower,
        upper=ci.upper,
        dense_only=ci.baseline_only,
        candidate_only=ci.candidate_only,
        macro_f1=macro_f1,
        informative=informative,
        retained=retained_share(acc, dense_acc, chance) if informative else None,
    )


def _sources(args) -> list[tuple[str, str]]:
    out = [("wordnet-medical", args.wordnet), ("drug-brands", args.drugs)]
    if args.pubmedqa:
        out.append(("pubmedqa", args.pubmedqa))
    return out


def _eval_cfg(args):
    from medprune.config import EvaluateConfig

    return EvaluateConfig(
        mcq=args.mcq,
        mcq_sources=[
            {"name": name, "data": path, "max_items": args.max_items}
            for name, path in _sources(args)
        ],
        batch_size=8,
        seq_len=args.eval_seq_len,
        max_items=args.max_items,
        latency_repeats=1,
    )


def _predictions(eval_dir: Path) -> dict[str, tuple[list[dict], float | None]]:
    from medprune.evaluate.runner import read_predictions, read_results, source_predictions_file

    results = read_results(eval_dir)
    out = {"builtin": (read_predictions(eval_dir) or [], None)}
    for name, summary in (results.get("mcq_sources") or {}).items():
        f1 = (summary.get("classes") or {}).get("macro_f1")
        out[name] = (read_predictions(eval_dir, source_predictions_file(name)) or [], f1)
    return out


@dataclass(frozen=True)
class Recipe:
    """A ``--recipe``: ``[lora-]BASE[+hidden]``."""

    base: str
    lora: bool
    hidden: bool


def parse_recipe(recipe: str) -> Recipe:
    """Split a recipe name; raises ValueError naming what is allowed."""
    core, plus, suffix = recipe.partition("+")
    lora = core.startswith("lora-")
    base = core.removeprefix("lora-")
    hidden = bool(plus)
    if (
        base not in RECIPES
        or (plus and suffix != "hidden")
        or (base == "none" and (lora or hidden))
    ):
        raise ValueError(
            f"--recipe {recipe!r}: use one of {list(RECIPES)}, optionally lora- prefixed and "
            "+hidden suffixed (none takes neither)"
        )
    return Recipe(base, lora, hidden)


def _run_config(args, dense_dir: Path, method: str, sparsity: float, recipe: str):
    from medprune.config import RunConfig

    parsed = parse_recipe(recipe)
    lora, base = parsed.lora, parsed.base
    distill = {"enabled": True, "temperature": 2.0, "kl_weight": 1.0, "ce_weight": 0.5}
    if parsed.hidden:
        distill["hidden_weight"] = args.hidden_weight
    recover: dict = {
        "enabled": base != "none",
        "data": args.recovery_data,
        "steps": args.max_steps,
        "max_minutes": args.budget_minutes,
        "budget_clock": "cpu",
        "lr": args.lr,
        "warmup_steps": 2,
        "schedule": "constant",
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "mode": "lora" if lora else "full",
        "distill": distill,
        "log_every": 10,
    }
    if base in ("teacher", "mix"):
        recover["teacher_data"] = {
            "sequences": args.teacher_sequences,
            "temperature": args.teacher_temperature,
            "rewrite_share": args.rewrite_share,
            "mix": 1.0 if base == "teacher" else 0.5,
            "cache_dir": str(args.teacher_cache),
        }
    return RunConfig(
        seed=args.seed,
        output_dir=str(args.teacher_cache.parent),
        model={"source": str(dense_dir), "dtype": "float32"},
        prune={
            "method": method,
            "sparsity": sparsity,
            "calibration": {
                "data": args.calibration_data,
                "num_samples": args.calib_samples,
                "seq_len": 128,
            },
        },
        evaluate=_eval_cfg(args),
        recover=recover,
    )


def run_cell(args, dense_dir: Path, row: str, spec: str, recipe: str, work: Path, say) -> dict:
    """Prune (once per row, reused across recipes), recover with ``recipe``, evaluate."""
    import resource

    from medprune.evaluate.runner import evaluate_model
    from medprune.io.atomic import is_complete
    from medprune.prune.stage import stage_prune
    from medprune.recover.stage import stage_recover

    method, _, value = spec.partition(":")
    cfg = _run_config(args, dense_dir, method, float(value), recipe)
    pruned = work / f"{row}-pruned"
    if not is_complete(pruned):
        shutil.rmtree(pruned, ignore_errors=True)
        stage_prune(cfg, dense_dir, pruned, progress=say)
    out = work / f"{row}-{recipe}"
    shutil.rmtree(out, ignore_errors=True)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    report = stage_recover(cfg, pruned, out, teacher_dir=dense_dir, progress=say)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    teacher = report.get("teacher_data") or {}
    # Writing the teacher's text is paid once per teacher and settings (then cached), so it
    # is reported apart from the recovery budget, which counts training steps only.
    generation_s = teacher.get("seconds") if teacher.get("generated") else None
    evaluate_model(
        out, cfg.evaluate, work / f"{row}-{recipe}-eval", label=f"{row}/{recipe}", progress=say
    )
    return {
        "row": row,
        "spec": spec,
        "recipe": recipe,
        "hidden_weight": cfg.recover.distill.hidden_weight if cfg.recover.enabled else None,
        "recover_steps": report.get("steps", 0),
        "recover_cpu_s": cpu,
        "recover_wall_s": time.perf_counter() - t0,
        "teacher_generation_wall_s": generation_s,
        "data_shares": report.get("data_shares"),
        "eval_dir": str(work / f"{row}-{recipe}-eval"),
    }


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(cells: list[dict]) -> str:
    lines = [
        "| row | recipe | steps | source | acc (dense) | diff [95% CI] | dense-only / cand-only | macro-F1 | retained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        for s in c["scores"]:
            retained = _fmt(s["retained"], 2) if s["informative"] else "uninformative"
            lines.append(
                f"| {c['row']} | {c['recipe']} | {c['recover_steps']} | {s['source']} "
                f"| {s['accuracy']:.3f} ({s['dense_accuracy']:.3f}) "
                f"| {s['difference']:+.3f} [{s['lower']:+.3f}, {s['upper']:+.3f}] "
                f"| {s['dense_only']} / {s['candidate_only']} | {_fmt(s['macro_f1'])} | {retained} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=str(CACHE / "models/smollm2-135m-instruct"))
    p.add_argument("--recovery-data", default=str(CACHE / "data/recovery.jsonl"))
    p.add_argument("--calibration-data", default=str(CACHE / "data/calibration.jsonl"))
    p.add_argument("--mcq", default=str(CACHE / "data/mcq.jsonl"))
    p.add_argument("--wordnet", default=str(CACHE / "data/mcq_wordnet.jsonl"))
    p.add_argument("--drugs", default=str(CACHE / "data/mcq_drugs.jsonl"))
    p.add_argument("--pubmedqa", default=None, help="PubMedQA ori_pqal file (optional).")
    p.add_argument(
        "--row", action="append", dest="rows", help=f"NAME=METHOD:VALUE (default {DEFAULT_ROWS})"
    )
    p.add_argument(
        "--recipe",
        action="append",
        dest="recipes",
        help=f"one of {list(RECIPES)}, optionally lora- prefixed and +hidden suffixed "
        f"(default {DEFAULT_RECIPES})",
    )
    p.add_argument(
        "--hidden-weight",
        type=float,
        default=1.0,
        help="recover.distill.hidden_weight of the +hidden recipes (default 1.0).",
    )
    p.add_argument(
        "--budget-minutes", type=float, default=5.0, help="Recovery CPU minutes per cell."
    )
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--teacher-sequences", type=int, default=512)
    p.add_argument("--teacher-temperature", type=float, default=0.8)
    p.add_argument("--rewrite-share", type=float, default=0.5)
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--max-items", type=int, default=300, help="Items per source.")
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work", default=None, help="Keep models and evaluations here (default: a temp dir)."
    )
    p.add_argument(
        "--json", default=None, help="Write rows and run info to this file or folder (ending in /)."
    )
    args = p.parse_args(argv)
    recipes = args.recipes or DEFAULT_RECIPES
    for r in recipes:
        try:
            parse_recipe(r)
        except ValueError as exc:
            p.error(str(exc))
    if args.hidden_weight <= 0:
        p.error(f"--hidden-weight {args.hidden_weight}: must be > 0")
    rows = []
    for entry in args.rows or DEFAULT_ROWS:
        name, sep, spec = entry.partition("=")
        method, sep2, value = spec.partition(":")
        if (
            not sep
            or not sep2
            or method not in ("width", "depth", "wanda", "sparsegpt", "magnitude")
        ):
            p.error(f"--row {entry!r}: expected NAME=METHOD:VALUE, e.g. width-25=width:0.25")
        try:
            float(value)
        except ValueError:
            p.error(f"--row {entry!r}: {value!r} is not a number")
        rows.append((name, spec))
    for path in [args.model, args.recovery_data, args.calibration_data, args.mcq]:
        if not Path(path).exists():
            print(
                f"error: {path} not found (run `medprune fetch-default` and `medprune build-data`)",
                file=sys.stderr,
            )
            return 2
    for _, path in _sources(args):
        if not Path(path).is_file():
            print(f"error: {path} not found (run `medprune build-data`)", file=sys.stderr)
            return 2

    import torch

    from medprune.evaluate.runner import evaluate_model
    from medprune.io.atomic import atomic_write_json
    from medprune.load.model import check_model_dir

    from run_info import results_path, run_info

    if args.threads:
        torch.set_num_threads(args.threads)
    dense_dir = check_model_dir(args.model)
    info = run_info(torch.get_num_threads())
    out = results_path(args.json, "retention", info) if args.json else None
    cells: list[dict] = []

    def write_json(final: bool) -> None:
        if out:
            settings = {k: v for k, v in vars(args).items() if k != "teacher_cache"}
            run = {**info, "complete": final, "settings": settings}
            atomic_write_json(out, {"run": run, "rows": cells})

    def say(msg: str) -> None:
        print(msg, flush=True)

    with tempfile.TemporaryDirectory(prefix="medprune-retention-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        args.teacher_cache = work / "teacher-data"
        dense_eval = work / "dense-eval"
        if not (dense_eval / "results.json").is_file():
            evaluate_model(dense_dir, _eval_cfg(args), dense_eval, label="dense", progress=say)
        dense = _predictions(dense_eval)
        for name, spec in rows:
            for recipe in recipes:
                cell = run_cell(args, dense_dir, name, spec, recipe, work, say)
                cand = _predictions(Path(cell["eval_dir"]))
                cell["scores"] = [
                    asdict(score_source(src, dense[src][0], cand[src][0], cand[src][1]))
                    for src in ["builtin", *(name for name, _ in _sources(args))]
                ]
                cell["dense_macro_f1"] = {
                    src: f1 for src, (_, f1) in dense.items() if f1 is not None
                }
                cells.append(cell)
                say(markdown_table(cells))
                write_json(final=False)
    print(markdown_table(cells))
    write_json(final=True)
    if out:
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
