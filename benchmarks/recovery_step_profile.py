"""Where does a recovery step's time go? Teacher forward, student forward, loss, backward and
optimizer, for each distillation loss (full-vocabulary KL, top-k KL, hidden states).

For each model it prunes the dense model by magnitude (50%, unstructured: the shapes recovery
trains are the dense ones, and the masks are held as in full fine-tuning), then runs
recovery steps with the product's loss functions (:func:`medprune.recover.distill.recovery_loss`)
and mask helpers, timing each phase with wall and process CPU time. The variants' steps are
interleaved (variant A step 1, variant B step 1, ...) so that a change in the machine's load
falls on every variant alike; the first ``--warmup`` steps of each (optimizer state, first
allocations) are not counted. The median of each phase over the counted steps is reported::

    python benchmarks/recovery_step_profile.py --threads 1 --steps 3 \\
        --model smollm2-135m=.cache/medprune/models/smollm2-135m-instruct \\
        --model gemma3-270m=.cache/medprune/models/gemma3-270m \\
        --variant full --variant top_k=64 --json benchmarks/results/

Variants: ``full`` (the product's default loss), ``top_k=K`` (``recover.distill.top_k``),
``hidden=W`` (``recover.distill.hidden_weight``, all intermediate layers), or both joined by
a comma (``top_k=64,hidden=1``). The teacher runs in float32 on the CPU, as recovery does
there; the batch is ``--batch-size`` x ``--seq-len`` tokens of ``recovery.jsonl``.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(".cache/medprune")
DEFAULT_MODELS = [
    f"smollm2-135m={CACHE / 'models/smollm2-135m-instruct'}",
    f"gemma3-270m={CACHE / 'models/gemma3-270m'}",
]
DEFAULT_VARIANTS = ["full", "top_k=64"]
PHASES = ("teacher_forward", "student_forward", "loss", "backward", "optimizer")
# The product's default distillation settings (recover.distill).
BASE_DISTILL = {"temperature": 2.0, "kl_weight": 1.0, "ce_weight": 0.5}


def parse_variant(spec: str) -> dict:
    """``full`` -> {}; ``top_k=64,hidden=1`` -> {"top_k": 64, "hidden_weight": 1.0}."""
    if spec == "full":
        return {}
    out: dict = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        if not eq or key not in ("top_k", "hidden"):
            raise ValueError(
                f"--variant {spec!r}: use full, top_k=K, hidden=W or both, comma-joined"
            )
        if key == "top_k":
            out["top_k"] = int(value)
        else:
            out["hidden_weight"] = float(value)
    return out


def shares(phases: dict[str, float]) -> dict[str, float]:
    """Each phase's share of their sum."""
    total = sum(phases.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in phases.items()}


class PhaseClock:
    """Wall and process CPU seconds of named phases, one list entry per step."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {p: [] for p in PHASES}
        self.cpu: dict[str, list[float]] = {p: [] for p in PHASES}

    @contextmanager
    def phase(self, name: str, record: bool):
        w0, c0 = time.perf_counter(), time.process_time()
        yield
        if record:
            self.wall[name].append(time.perf_counter() - w0)
            self.cpu[name].append(time.process_time() - c0)

    def medians(self, which: str) -> dict[str, float]:
        data = self.wall if which == "wall" else self.cpu
        return {k: statistics.median(v) for k, v in data.items() if v}


class VariantRun:
    """One student, its optimizer and masks, stepped with one distillation loss."""

    def __init__(self, name: str, student, teacher, distill, lr: float) -> None:
        import torch

        from medprune.recover.layers import hidden_state_pairs
        from medprune.recover.masks import capture_masks

        self.name, self.distill, self.teacher = name, distill, teacher
        self.student = student.train()
        self.masks = capture_masks(self.student, ("lm_head", "embed_tokens"))
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr)
        self.pairs = (
            hidden_state_pairs(student, teacher, distill.hidden_layers)
            if distill.hidden_weight > 0
            else []
        )
        self.clock = PhaseClock()
        self.losses: list[dict[str, float]] = []

    def step(self, ids, labels, attn, record: bool) -> None:
        import torch

        from medprune.recover.distill import hidden_state_loss, recovery_loss
        from medprune.recover.masks import mask_gradients, reapply_masks

        d, clock = self.distill, self.clock
        kwargs = {"output_hidden_states": True} if self.pairs else {}
        with clock.phase("teacher_forward", record), torch.no_grad():
            t_out = self.teacher(input_ids=ids, attention_mask=attn, **kwargs)
        with clock.phase("student_forward", record):
            out = self.student(input_ids=ids, attention_mask=attn, **kwargs)
        with clock.phase("loss", record):
            hidden = None
            if self.pairs:
                hidden = hidden_state_loss(out.hidden_states, t_out.hidden_states, self.pairs, attn)
            loss, parts = recovery_loss(
                out.logits,
                labels,
                t_out.logits,
                temperature=d.temperature,
                kl_weight=d.kl_weight,
                ce_weight=d.ce_weight,
                top_k=d.top_k,
                hidden=hidden,
                hidden_weight=d.hidden_weight,
            )
        del t_out, out
        with clock.phase("backward", record):
            loss.backward()
        with clock.phase("optimizer", record):
            mask_gradients(self.student, self.masks)
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            reapply_masks(self.student, self.masks)
        self.losses.append({"loss": float(loss.detach()), **parts})


def profile_model(name: str, path: str, args, variants: list[str], say) -> dict:
    """Prune ``path`` once, then step every variant, interleaved; a result row per variant."""

    from medprune.config import PruneConfig
    from medprune.config.recover import DistillConfig
    from medprune.load.model import load_model
    from medprune.prune.engine import prune_model
    from medprune.recover.data import batch_indices, load_examples

    teacher, tokenizer = load_model(path, dtype="float32")
    teacher.eval().requires_grad_(False)
    pruned, _ = load_model(path, dtype="float32")
    pruned = prune_model(pruned, tokenizer, PruneConfig(method="magnitude", sparsity=0.5)).model
    examples = load_examples(tokenizer, args.data, args.seq_len, "text")
    runs = [
        VariantRun(
            v,
            copy.deepcopy(pruned),
            teacher,
            DistillConfig(**BASE_DISTILL, **parse_variant(v)),
            args.lr,
        )
        for v in variants
    ]
    del pruned
    config = teacher.config.get_text_config()
    top_ks = sorted({d.top_k for d in (r.distill for r in runs) if d.top_k is not None})
    load_before = list(os.getloadavg())
    for step in range(args.warmup + args.steps):
        idx = batch_indices(len(examples), args.batch_size, 0, step * args.batch_size)
        ids, labels = examples.input_ids[idx], examples.labels[idx]
        attn = examples.attention_mask[idx]
        for run in runs:
            t0 = time.perf_counter()
            run.step(ids, labels, attn, record=step >= args.warmup)
            say(
                f"{name} {run.name} step {step + 1}/{args.warmup + args.steps}"
                f"{' (warm-up)' if step < args.warmup else ''}: {time.perf_counter() - t0:.2f} s, "
                f"loss {run.losses[-1]['loss']:.4f}"
            )
    load_after = list(os.getloadavg())
    rows = []
    for run in runs:
        wall, cpu = run.clock.medians("wall"), run.clock.medians("cpu")
        rows.append(
            {
                "model": name,
                "variant": run.name,
                "distill": run.distill.model_dump(mode="json"),
                "vocab_size": int(config.vocab_size),
                "hidden_size": int(config.hidden_size),
                "layers": int(config.num_hidden_layers),
                "params": sum(p.numel() for p in teacher.parameters()),
                "tokens_per_step": args.batch_size * args.seq_len,
                "steps_counted": args.steps,
                "wall_s": wall,
                "cpu_s": cpu,
                "step_wall_s": sum(wall.values()),
                "step_cpu_s": sum(cpu.values()),
                "wall_share": shares(wall),
                "cpu_share": shares(cpu),
                "wall_s_per_step": [
                    sum(run.clock.wall[p][i] for p in PHASES) for i in range(args.steps)
                ],
                "losses": run.losses,
                "load_average_before": load_before,
                "load_average_after": load_after,
                "max_rss_mb_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    losses = None
    if args.loss_repeats:
        del runs, teacher  # free the models before the loss alone is timed
        say(f"{name}: timing the loss alone ({args.loss_repeats} repeats)")
        losses = loss_profile(
            int(config.vocab_size), args.batch_size, args.seq_len, top_ks, args.loss_repeats
        )
    return {"rows": rows, "loss_alone": losses}


def loss_profile(vocab: int, batch: int, seq_len: int, top_ks: list[int], repeats: int = 3):
    """The loss alone, forward and backward, on random logits of one step's shape (the
    teacher's ``* 3`` so its distribution is peaked like a trained model's): median process
    CPU seconds over ``repeats`` of CE, the full KL, each top-k KL, and each KL + 0.5 x CE
    (the product's default weights)."""
    import torch

    from medprune.recover.distill import kl_distill_loss, lm_loss, topk_kl_distill_loss

    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(batch, seq_len, vocab, generator=g) * 3
    student = torch.randn(batch, seq_len, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (batch, seq_len), generator=g)
    losses = {
        "ce": lambda s: lm_loss(s, labels),
        "full_kl": lambda s: kl_distill_loss(s, teacher, labels, 2.0),
        "full_kl+0.5ce": lambda s: (
            kl_distill_loss(s, teacher, labels, 2.0) + 0.5 * lm_loss(s, labels)
        ),
    }
    for k in top_ks:
        losses[f"top{k}_kl"] = lambda s, k=k: topk_kl_distill_loss(s, teacher, labels, 2.0, k)
        losses[f"top{k}_kl+0.5ce"] = lambda s, k=k: (
            topk_kl_distill_loss(s, teacher, labels, 2.0, k) + 0.5 * lm_loss(s, labels)
        )
    out = {}
    for name, fn in losses.items():
        fwd, bwd = [], []
        for _ in range(repeats):
            s = student.clone().requires_grad_(True)
            c0 = time.process_time()
            loss = fn(s)
            c1 = time.process_time()
            loss.backward()
            fwd.append(c1 - c0)
            bwd.append(time.process_time() - c1)
            del s, loss
        out[name] = {
            "forward_cpu_s": statistics.median(fwd),
            "backward_cpu_s": statistics.median(bwd),
        }
    return out


def loss_table(name: str, losses: dict) -> str:
    lines = [
        f"| {name}: loss alone | forward CPU s | backward CPU s | total |",
        "|---|---|---|---|",
    ]
    for k, v in losses.items():
        total = v["forward_cpu_s"] + v["backward_cpu_s"]
        lines.append(
            f"| {k} | {v['forward_cpu_s']:.2f} | {v['backward_cpu_s']:.2f} | {total:.2f} |"
        )
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """Per row: the step's median wall and CPU seconds, and each phase's median CPU seconds
    and share of the step's CPU time (process CPU time is the steadier measure on a shared
    machine: a one-thread step waiting for a core does not count)."""
    head = (
        "| model | variant | step s wall | step s CPU | "
        + " | ".join(f"{p} CPU s" for p in PHASES)
        + " | load 1/5/15 min after |"
    )
    lines = [head, "|" + "---|" * (5 + len(PHASES))]
    for r in rows:
        cpu_share = shares(r["cpu_s"])
        cells = " | ".join(f"{r['cpu_s'][p]:.2f} ({cpu_share[p]:.0%})" for p in PHASES)
        load = "/".join(f"{x:.2f}" for x in r["load_average_after"])
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['step_wall_s']:.2f} | {r['step_cpu_s']:.2f} "
            f"| {cells} | {load} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"NAME=PATH of a dense model (default {DEFAULT_MODELS})",
    )
    p.add_argument(
        "--variant",
        action="append",
        dest="variants",
        help=f"full, top_k=K, hidden=W, or comma-joined (default {DEFAULT_VARIANTS})",
    )
    p.add_argument("--data", default=str(CACHE / "data/recovery.jsonl"))
    p.add_argument("--steps", type=int, default=3, help="Steps counted per variant.")
    p.add_argument("--warmup", type=int, default=1, help="Steps per variant not counted.")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument(
        "--loss-repeats",
        type=int,
        default=3,
        help="Also time the loss alone on random logits of the step's shape, this many times "
        "(0: skip).",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default).")
    p.add_argument(
        "--json", default=None, help="Write rows and run info to this file or folder (ending in /)."
    )
    args = p.parse_args(argv)
    variants = args.variants or DEFAULT_VARIANTS
    for v in variants:
        try:
            parse_variant(v)
        except ValueError as exc:
            p.error(str(exc))
    if args.steps < 1:
        p.error("--steps must be >= 1")
    models = []
    for entry in args.models or DEFAULT_MODELS:
        name, sep, path = entry.partition("=")
        if not sep:
            p.error(f"--model {entry!r}: expected NAME=PATH")
        if not Path(path).is_dir():
            print(f"error: {path} not found (run `medprune fetch-default`)", file=sys.stderr)
            return 2
        models.append((name, path))
    if not Path(args.data).is_file():
        print(f"error: {args.data} not found (run `medprune build-data`)", file=sys.stderr)
        return 2

    import torch

    from medprune.io.atomic import atomic_write_json

    from run_info import results_path, run_info

    if args.threads:
        torch.set_num_threads(args.threads)
    info = run_info(torch.get_num_threads())
    out = results_path(args.json, "recovery-step-profile", info) if args.json else None
    rows: list[dict] = []
    loss_alone: dict[str, dict] = {}

    def write_json(final: bool) -> None:
        if out:
            run = {**info, "complete": final, "settings": {**vars(args), "variants": variants}}
            atomic_write_json(out, {"run": run, "rows": rows, "loss_alone": loss_alone})

    for name, path in models:
        result = profile_model(name, path, args, variants, lambda m: print(m, flush=True))
        rows.extend(result["rows"])
        print(markdown_table(rows), flush=True)
        if result["loss_alone"] is not None:
            loss_alone[name] = result["loss_alone"]
            print(loss_table(name, result["loss_alone"]), flush=True)
        write_json(final=False)
    write_json(final=True)
    if out:
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
