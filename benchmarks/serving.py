"""Serving benchmark: GGUF export of dense and pruned models, checked and timed.

For each row (dense, or a pruning setting) it prunes the model (``--model``, SmolLM2 by
default; float32, calibration on the built-in clinical calibration text), exports f16 and
q8_0 GGUF files with ``medprune.export``, and measures:

- file sizes;
- logits of the GGUF files (loaded back with transformers' ``gguf_file=``) against the HF
  model on held-out clinical texts: max and mean |difference|, next-token agreement;
- perplexity on held-out clinical text of the HF model and of the q8_0 file;
- in llama.cpp itself (built by ``make llama-cpp``; ``--no-llama-cpp`` skips it), for f16 and
  q8_0: ``llama-bench`` prompt processing (``--llama-prompt`` tokens) and generation
  (``--llama-gen`` tokens) tokens/s at ``--threads`` threads, and ``llama-perplexity`` on the
  held-out clinical texts (llama.cpp's method: chunks of ``--llama-ctx`` tokens, the second
  half of each scored; comparable across rows, not with the per-text transformers number).
  q8_0 runs without llama.cpp's repacked weight layouts (``REPACK`` in
  ``medprune.export.llama_cpp_tools``: its AMX q8_0 kernel crashes in this llama.cpp)::

    make llama-cpp
    python benchmarks/serving.py --threads 2 --json benchmarks/results/

Run it alone on an idle machine for numbers: the tokens/s are wall-clock rates. The slow,
CPU-heavy part (pruning, export, the transformers-side checks) and the short timing part can
run apart, so that only the timing needs the idle machine::

    python benchmarks/serving.py --phase prepare --work /work/bench/serve-smol
    python benchmarks/serving.py --phase measure --work /work/bench/serve-smol --threads 2 \
        --json benchmarks/results/

``--phase prepare`` writes each row into ``--work`` (``NAME/gguf/``, ``NAME/row.json``) and a
``manifest.json`` (``serving_workspace``); a second prepare with the same settings skips the
rows already done. ``--phase measure`` reads the manifest and runs only llama-bench and
llama-perplexity; its results file carries the prepare run (``run.prepare``) and, for the
whole timing (``run.machine_load``) and each row (``llama_cpp_timing``), the load average at
start and end and the CPU the other processes used meanwhile, ``alone`` when at most
``run_info.ALONE_MAX_OTHER_CORES`` cores on average. The transformers tokens/s
(``hf_speed``) are timed by prepare; under load, read their per-CPU-second rates.
``--phase all`` (the default) does both per row, as before.

The model's folder name is recorded (``run.model``, each row's ``model``). A model that
carries terms (Gemma 3 270M: ``GEMMA_TERMS.html``) is refused unless ``--accept-terms gemma``;
its terms files are copied beside the exported files. Ollama's Modelfile is written only for
a model with a chat template (``modelfile`` in each row)::

    python benchmarks/serving.py --phase prepare --model .cache/medprune/models/gemma3-270m \
        --accept-terms gemma --work /work/bench/serve-gemma

Rows are ``NAME=METHOD:SPARSITY[:PATTERN]`` (``dense`` alone for the unpruned model;
``wanda-2of4=wanda:0.5:2:4`` for 2:4 semi-structured sparsity).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

CACHE = Path(".cache/medprune")
DEFAULT_ROWS = [
    "dense",
    "wanda-50=wanda:0.5",
    "wanda-2of4=wanda:0.5:2:4",
    "width-25=width:0.25",
    "width-50=width:0.5",
    "depth-25=depth:0.25",
]
OUTTYPES = ("f16", "q8_0")


def parse_row(spec: str) -> tuple[str, str | None, float | None, str]:
    """``NAME=METHOD:SPARSITY[:PATTERN]`` -> (name, method, sparsity, pattern)."""
    name, _, rest = spec.partition("=")
    if not rest:
        return name, None, None, "unstructured"
    parts = rest.split(":")
    pattern = ":".join(parts[2:]) or "unstructured"
    return name, parts[0], float(parts[1]), pattern


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


def _gguf_sliding_pattern(path: Path) -> list[bool] | None:
    """The per-layer sliding-window flags a GGUF file stores (``*.attention.
    sliding_window_pattern``, written for Gemma 2 / 3 whose pattern no longer has the fixed
    period, e.g. after depth pruning), or None."""
    from gguf import GGUFReader

    for key, f in GGUFReader(path).fields.items():
        if key.endswith(".attention.sliding_window_pattern"):
            return [bool(f.parts[i][0]) for i in f.data]
    return None


def load_gguf_with_transformers(path: Path):
    """A GGUF file loaded back with transformers' ``gguf_file=``, with the file's own
    sliding/full layer pattern: transformers' GGUF loader ignores the stored pattern and
    assumes Gemma 3's period of 6, wrong for a depth-pruned Gemma (its logits then differ by
    up to 7 from the same weights with the stored pattern; llama.cpp reads the pattern)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    pattern = _gguf_sliding_pattern(path)
    layer_types = getattr(model.config, "layer_types", None)
    if pattern is None or layer_types is None:
        return model
    stored = ["sliding_attention" if s else "full_attention" for s in pattern]
    if stored == list(layer_types):
        return model
    config = copy.deepcopy(model.config)
    config.layer_types = stored
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are already dequantized
    rebuilt = type(model)(config).to(torch.float32).eval()
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


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


def model_record(model: str) -> dict:
    """What the results say about the model: its folder name (``smollm2-135m-instruct``,
    ``gemma3-270m``), its ``model_type`` and the terms it carries (``gemma``)."""
    from medprune.load.terms import terms_in

    model_dir = Path(model)
    config = model_dir / "config.json"
    model_type = None
    if config.is_file():
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    return {
        "name": model_dir.resolve().name,
        "model_type": model_type,
        "terms": terms_in(model_dir),
    }


def prepare_row(
    spec: str, args, work: Path, say, *, reuse: bool = False, prepared_by: dict | None = None
):
    """Prune (``spec``), save, export f16 / q8_0 GGUF into ``work/NAME/gguf`` and run the
    transformers-side checks; the row is saved as ``work/NAME/row.json``. ``reuse``: a row
    prepared earlier with the same settings is returned as it is."""
    import torch
    from transformers import AutoModelForCausalLM

    from medprune.config import PruneConfig
    from medprune.evaluate.perplexity import perplexity
    from medprune.export.bundle import export_for_ollama
    from medprune.io.jsonl import read_texts
    from medprune.load.model import load_model, save_model
    from medprune.load.terms import copy_terms
    from medprune.prune.engine import prune_model

    from serving_workspace import ROW_SETTINGS, PreparedRow, row_settings

    name, method, sparsity, pattern = parse_row(spec)
    settings = row_settings(
        spec,
        args.model,
        args.data,
        args.threads,
        **{k: getattr(args, k) for k in ROW_SETTINGS},
    )
    if reuse:
        done = PreparedRow.done(work, name, settings)
        if done is not None:
            say(f"[{name}] prepared earlier with the same settings: skipped")
            return done
    row: dict = {"row": name, "model": Path(args.model).resolve().name}
    model, tok = load_model(args.model, dtype="float32")
    if method is not None:
        row.update(method=method, sparsity=sparsity, pattern=pattern)
        calib = read_texts(
            Path(args.data) / "calibration.jsonl"
        )  # the engine packs num_samples x seq_len
        pcfg = PruneConfig(
            method=method,
            sparsity=sparsity,
            pattern=pattern,
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
    hf_dir, gguf_dir = work / name / "hf", work / name / "gguf"
    for d in (hf_dir, gguf_dir):
        if d.exists():
            shutil.rmtree(d)
    (work / name / "row.json").unlink(missing_ok=True)
    save_model(model, tok, hf_dir)
    # A model under its own terms (Gemma) keeps them beside everything derived from it.
    copy_terms(args.model, hf_dir)
    del model
    # Ollama's Modelfile needs a chat template; a pretrained model (Gemma 3 270M) has none.
    row["modelfile"] = bool(getattr(tok, "chat_template", None))
    t0 = time.perf_counter()
    out = export_for_ollama(hf_dir, gguf_dir, name=name, modelfile=row["modelfile"])
    row["export_s"] = round(time.perf_counter() - t0, 1)
    copy_terms(args.model, gguf_dir)
    row["writer"] = json.loads(out.manifest.read_text())["writer"]
    row["files_mb"] = {t: round(p.stat().st_size / 1e6, 1) for t, p in out.gguf.items()}
    heldout = read_texts(Path(args.data) / "heldout.jsonl")
    ppl_texts, logit_texts = heldout[: args.ppl_texts], heldout[-args.logit_texts :]
    ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    row["ppl_hf"] = perplexity(ref, tok, ppl_texts, max_length=args.seq_len).perplexity
    row["hf_speed"] = _hf_speed(ref, tok, heldout[-1], args)
    row["logits"] = {}
    for outtype, path in out.gguf.items():
        g = load_gguf_with_transformers(path)
        row["logits"][outtype] = _logit_stats(ref, g, tok, logit_texts, args.seq_len)
        if outtype == "q8_0":
            row["ppl_q8_0"] = perplexity(g, tok, ppl_texts, max_length=args.seq_len).perplexity
        del g
    del ref
    shutil.rmtree(hf_dir)
    say(f"[{name}] {json.dumps({k: row[k] for k in ('files_mb', 'ppl_hf', 'ppl_q8_0')})}")
    prepared = PreparedRow(
        name=name,
        settings=settings,
        files={t: str(p.relative_to(work)) for t, p in out.gguf.items()},
        file_bytes={t: p.stat().st_size for t, p in out.gguf.items()},
        row=row,
        prepared_by=prepared_by or {},
    )
    prepared.save(work)
    return prepared


def heldout_text_file(args, work: Path) -> Path:
    """The held-out clinical texts llama-perplexity reads (one file, blank-line separated)."""
    from medprune.io.jsonl import read_texts

    texts = read_texts(Path(args.data) / "heldout.jsonl")[: args.llama_ppl_texts]
    path = work / "heldout.txt"
    path.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    return path


def run_llama_cpp(row: dict, files: dict[str, Path], args, say) -> None:
    """llama.cpp's own numbers for each GGUF file of a row: llama-bench and llama-perplexity."""
    from medprune.export.llama_cpp import LlamaCpp
    from medprune.export.llama_cpp_tools import REPACK, run_bench, run_perplexity

    lc = LlamaCpp(Path(args.llama_cpp)).require_built()
    text = heldout_text_file(args, Path(args.work))
    row["llama_cpp"] = {}
    for outtype in OUTTYPES:
        if outtype not in files:
            continue
        bench = run_bench(
            lc,
            files[outtype],
            prompt_tokens=args.llama_prompt,
            gen_tokens=args.llama_gen,
            threads=args.threads,
            repetitions=args.llama_reps,
            repack=REPACK[outtype],
        )
        ppl = run_perplexity(
            lc,
            files[outtype],
            text,
            n_ctx=args.llama_ctx,
            threads=args.threads,
            repack=REPACK[outtype],
        )
        row["llama_cpp"][outtype] = {
            **bench.__dict__,
            "ppl": ppl.perplexity,
            "ppl_ctx": ppl.n_ctx,
            "repack": REPACK[outtype],
        }
    say(f"[{row['row']}] llama.cpp {json.dumps(row['llama_cpp'])}")


def format_llama_table(rows: list[dict]) -> str:
    """llama.cpp rows: per row and outtype, perplexity and tokens/s, and each speed relative
    to the dense row's of the same outtype."""
    lines = [
        "| row | outtype | ppl (llama.cpp) | prompt tok/s | gen tok/s | prompt vs dense | "
        "gen vs dense | threads |",
        "|" + "---|" * 8,
    ]
    dense = next((r.get("llama_cpp") or {} for r in rows if r["row"] == "dense"), {})
    for r in rows:
        for outtype, m in (r.get("llama_cpp") or {}).items():
            d = dense.get(outtype) or {}
            pp = m["prompt_tps"] / d["prompt_tps"] if d.get("prompt_tps") else float("nan")
            tg = m["gen_tps"] / d["gen_tps"] if d.get("gen_tps") else float("nan")
            lines.append(
                f"| {r['row']} | {outtype} | {m['ppl']:.2f} | "
                f"{m['prompt_tps']:.1f} ± {m['prompt_tps_sd']:.1f} | "
                f"{m['gen_tps']:.1f} ± {m['gen_tps_sd']:.1f} | {pp:.2f}x | {tg:.2f}x | "
                f"{m['threads']} |"
            )
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    head = (
        "| row | layers/heads/kv/head_dim/hidden/mlp | params | f16 MB | q8_0 MB | f16 max/mean abs dlogit | "
        "q8_0 max/mean abs dlogit, top1 agree | ppl HF | ppl q8_0 (transformers) | "
        "HF (PyTorch f32) prompt / gen tok/s |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        s = r["shape"]
        f16, q8 = r["logits"].get("f16", {}), r["logits"].get("q8_0", {})
        lines.append(
            f"| {r['row']} | {s['layers']}/{s['heads']}/{s['kv_heads']}/{s['head_dim']}/{s['hidden']}/{s['mlp']} | "
            f"{r['params'] / 1e6:.1f}M | {r['files_mb'].get('f16', '-')} | {r['files_mb'].get('q8_0', '-')} | "
            f"{f16.get('max_abs', 0):.3f} / {f16.get('mean_abs', 0):.4f} | "
            f"{q8.get('max_abs', 0):.3f} / {q8.get('mean_abs', 0):.4f}, {q8.get('top1_agree', 0):.3f} | "
            f"{r['ppl_hf']:.2f} | {r.get('ppl_q8_0', float('nan')):.2f} | "
            f"{r.get('hf_speed', {}).get('prompt_tok_s', float('nan')):.0f} / {r.get('hf_speed', {}).get('gen_tok_s', float('nan')):.1f} |"
        )
    if any(r.get("llama_cpp") for r in rows):
        lines += ["", format_llama_table(rows)]
    return "\n".join(lines)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_prepare(args, work: Path, info: dict, *, reuse: bool) -> tuple[list, dict[str, str]]:
    """``--phase prepare``: every row prepared (or reused) and the manifest written after each.
    A row the library refuses (a pruning setting this model cannot reach, an export llama.cpp's
    converter refuses) is reported, recorded in the manifest (``run.failed``: row -> error) and
    skipped; the other rows go on."""
    from medprune.errors import MedpruneError

    from run_info import TimingWindow
    from serving_workspace import Manifest

    window = TimingWindow()
    prepared: list = []
    failed: dict[str, str] = {}
    by = {k: info.get(k) for k in ("date", "commit", "commit_dirty", "command")}
    for spec in args.rows:
        try:
            prepared.append(prepare_row(spec, args, work, _say, reuse=reuse, prepared_by=by))
        except MedpruneError as exc:
            failed[parse_row(spec)[0]] = f"{type(exc).__name__}: {exc}"
            _say(f"[{parse_row(spec)[0]}] FAILED: {failed[parse_row(spec)[0]]}")
        run = {
            **info,
            "complete": len(prepared) + len(failed) == len(args.rows),
            "failed": failed,
            "machine_load": window.stop(),
        }
        Manifest(model_record(args.model), run, vars(args), prepared).save(work)
    return prepared, failed


def measure_rows(prepared: list, args, work: Path, write) -> list[dict]:
    """llama.cpp's numbers for each prepared row, with the machine's load around each row's
    timing (``llama_cpp_timing``); ``write(rows, timing)`` after every row."""
    from run_info import TimingWindow

    window = TimingWindow()
    rows: list[dict] = []
    for p in prepared:
        row = dict(p.row)
        row_window = TimingWindow()
        run_llama_cpp(row, p.paths(work), args, _say)
        row["llama_cpp_timing"] = row_window.stop()
        rows.append(row)
        write(rows, window.stop())
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--phase",
        choices=("all", "prepare", "measure"),
        default="all",
        help="all: prepare and time each row in one go (default); prepare: prune, export and "
        "check into --work, timing nothing in llama.cpp; measure: only llama-bench and "
        "llama-perplexity on what --work holds (run it alone on an idle machine)",
    )
    p.add_argument("--model", default=str(CACHE / "models/smollm2-135m-instruct"))
    p.add_argument("--data", default=str(CACHE / "data"))
    p.add_argument(
        "--rows",
        nargs="*",
        default=None,
        help=f"row specs (default {' '.join(DEFAULT_ROWS)}); with --phase measure, names of "
        "prepared rows (default: all of them)",
    )
    p.add_argument(
        "--accept-terms",
        nargs="*",
        default=[],
        help="terms the model carries that this run accepts (gemma for Gemma 3 270M); a model "
        "that carries terms not listed is refused before any work",
    )
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--ppl-texts", type=int, default=20)
    p.add_argument("--logit-texts", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--llama-cpp",
        default=str(CACHE / "llama.cpp"),
        help="llama.cpp built by `make llama-cpp` (default .cache/medprune/llama.cpp)",
    )
    p.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp numbers")
    p.add_argument("--llama-ppl-texts", type=int, default=200, help="held-out texts for ppl")
    p.add_argument("--llama-ctx", type=int, default=256, help="llama-perplexity chunk length")
    p.add_argument("--llama-prompt", type=int, default=128, help="llama-bench -p")
    p.add_argument("--llama-gen", type=int, default=64, help="llama-bench -n")
    p.add_argument("--llama-reps", type=int, default=5, help="llama-bench -r")
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--work",
        default="/tmp/medprune-serving-bench",
        help="work folder: the rows' GGUF files and, for --phase prepare / measure, the "
        "manifest that measure reads",
    )
    p.add_argument("--keep", action="store_true", help="keep the GGUF files under --work")
    p.add_argument("--json", help="write the rows here (after every row)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if args.phase == "measure":
        return _measure_main(p, args, work)
    if args.rows is None:
        args.rows = list(DEFAULT_ROWS)

    from medprune.load.terms import terms_errors

    refused = terms_errors(args.model, args.accept_terms)
    if refused:
        p.error("; ".join(m.replace("model.accept_terms", "--accept-terms") for m in refused))
    if args.phase == "prepare" or args.no_llama_cpp:
        args.llama_cpp = None
    elif args.llama_cpp:
        from medprune.export.llama_cpp import LlamaCpp

        LlamaCpp(Path(args.llama_cpp)).require_built()  # before any work
    work.mkdir(parents=True, exist_ok=True)
    from medprune.io.atomic import atomic_write_text

    from run_info import TimingWindow, results_path, run_info

    info = run_info(args.threads)
    info["settings"] = vars(args)
    info["phase"] = args.phase
    info["model"] = model_record(args.model)
    if args.phase == "prepare":
        prepared, failed = run_prepare(args, work, info, reuse=True)
        _say(
            f"prepared {len(prepared)} rows in {work} ({len(failed)} failed: {sorted(failed)}); "
            f"now, alone on an idle machine: "
            f"python benchmarks/serving.py --phase measure --work {work} --json DIR"
        )
        print(format_table([r.row for r in prepared]))
        return 1 if failed else 0
    json_path = results_path(args.json, "serving", info) if args.json else None
    rows: list[dict] = []
    for spec in args.rows:
        prepared_row = prepare_row(spec, args, work, _say)
        row = dict(prepared_row.row)
        if args.llama_cpp:
            window = TimingWindow()
            run_llama_cpp(row, prepared_row.paths(work), args, _say)
            row["llama_cpp_timing"] = window.stop()
        if not args.keep:
            shutil.rmtree(work / prepared_row.name)
        rows.append(row)
        if json_path:
            done = len(rows) == len(args.rows)
            doc = {"run": {**info, "complete": done}, "args": vars(args), "rows": rows}
            atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
    if json_path:
        _say(f"results: {json_path}")
    print(format_table(rows))
    return 0


#: Settings that belong to the measure phase; every other setting in the results comes from
#: the prepare run that made the files.
MEASURE_SETTINGS = (
    "phase",
    "rows",
    "threads",
    "llama_cpp",
    "no_llama_cpp",
    "llama_ppl_texts",
    "llama_ctx",
    "llama_prompt",
    "llama_gen",
    "llama_reps",
    "work",
    "json",
)


def _measure_main(p: argparse.ArgumentParser, args, work: Path) -> int:
    """``--phase measure``: llama-bench and llama-perplexity on the rows ``--work`` holds."""
    from medprune.export.llama_cpp import LlamaCpp
    from medprune.io.atomic import atomic_write_text

    from run_info import results_path, run_info
    from serving_workspace import Manifest, WorkspaceError

    if args.no_llama_cpp or not args.llama_cpp:
        p.error("--phase measure runs llama.cpp; --no-llama-cpp leaves nothing to measure")
    try:
        manifest = Manifest.load(work)
    except WorkspaceError as exc:
        p.error(str(exc))
    names = [r.name for r in manifest.rows]
    wanted = [parse_row(r)[0] for r in args.rows] if args.rows else names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        p.error(f"--rows {unknown}: not prepared in --work {work} (it holds {names})")
    prepared = [next(r for r in manifest.rows if r.name == n) for n in wanted]
    LlamaCpp(Path(args.llama_cpp)).require_built()
    measured = {k: getattr(args, k) for k in MEASURE_SETTINGS}
    settings = {**manifest.settings, **measured}
    args.data = manifest.settings["data"]  # the held-out texts of the prepare run
    info = run_info(args.threads)
    prepare = {**manifest.run, "rows_prepared_by": {r.name: r.prepared_by for r in prepared}}
    info.update(settings=settings, phase="measure", model=manifest.model, prepare=prepare)
    json_path = results_path(args.json, "serving", info) if args.json else None

    def write(rows: list[dict], timing: dict) -> None:
        if json_path:
            run = {**info, "complete": len(rows) == len(prepared), "machine_load": timing}
            doc = {"run": run, "args": settings, "rows": rows}
            atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")

    rows = measure_rows(prepared, args, work, write)
    if json_path:
        _say(f"results: {json_path}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
