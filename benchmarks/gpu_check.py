"""GPU check: the CUDA paths of medprune in one command, with nothing from outside.

For a randomly initialised Llama-3.2-1B-shaped and a Gemma-3-1B-shaped model built from a
config (no download; plus SmolLM2-135M when ``--smollm2 DIR`` names its converted folder),
on the device:

* prunes with the library's own entry point (``medprune.prune.engine.prune_model``, layer by
  layer on the device): Wanda 50% unstructured, SparseGPT 2:4, width -25% of the
  parameters and depth -25% of the layers, each from a fresh copy of the dense model;
* checks every result: the sparsity of each pruned linear (unstructured), the 2:4 pattern,
  the smaller config (width, depth); saves it with ``save_model``, reloads it with
  ``load_model`` and compares logits with the model before saving;
* recovers the SparseGPT 2:4 row for 20 steps with distillation from the dense model
  (``recover_model``: accelerate, bf16 on a GPU) with the 2:4 masks held and checked;
* evaluates the dense model and the recovered row on 300 PubMedQA items (the copy bundled
  with medprune: ``medprune.data.licensed``), by option log-likelihood (``score_mcq``).

It writes one JSON: per model and step the seconds and the peak GPU memory (``torch.cuda``
``max_memory_allocated``, reset before each step), the checks, any error (a failing step is
recorded and the run goes on; the exit code is 1 when any step failed or a check did not
hold). Calibration and recovery text is the bundled ACI-BENCH train dialogues; the
tokenizer is a byte-level BPE built offline (ids < 260 of the model's full vocabulary), so
the logits and the memory are the real shapes'.

    python benchmarks/gpu_check.py --json benchmarks/results/        # on a CUDA machine
    python benchmarks/gpu_check.py --tiny --device cpu --json /tmp/x.json   # the CPU smoke test

``--tiny`` keeps each family's structure (GQA / one KV head, sliding and full layers, tied
embeddings, rope settings) at a few thousand parameters, with 2 recovery steps and 12 items
unless told otherwise: it is what the test suite runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROWS: dict[str, dict[str, Any]] = {
    "wanda-50": {"method": "wanda", "sparsity": 0.5, "pattern": "unstructured"},
    "sparsegpt-2:4": {"method": "sparsegpt", "sparsity": 0.5, "pattern": "2:4"},
    "width-25": {"method": "width", "sparsity": 0.25},
    "depth-25": {"method": "depth", "sparsity": 0.25},
}
RECOVER_ROW = "sparsegpt-2:4"

#: Llama 3.2 1B (meta-llama/Llama-3.2-1B config.json) and Gemma 3 1B (google/gemma-3-1b-pt
#: config.json), as published; random weights.
SHAPES: dict[str, dict[str, Any]] = {
    "llama3-1b": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-5,
    },
    "gemma3-1b": {
        "model_type": "gemma3_text",
        "vocab_size": 262144,
        "hidden_size": 1152,
        "intermediate_size": 6912,
        "num_hidden_layers": 26,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "max_position_embeddings": 32768,
        "query_pre_attn_scalar": 256,
        "sliding_window": 512,
        "layer_types": [
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(26)
        ],
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-6,
    },
}

#: ``--tiny``: the same families at test size (vocabulary just above the byte tokenizer's).
TINY: dict[str, dict[str, Any]] = {
    "llama3-1b": {
        "vocab_size": 320,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 16384,  # above llama3 rope scaling's original 8192
    },
    "gemma3-1b": {
        "vocab_size": 320,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": 16,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
        "max_position_embeddings": 4096,
    },
}
SPECIALS = ("<s>", "</s>", "<pad>", "<unk>")


def byte_tokenizer():
    """A Hugging Face fast tokenizer over bytes (BPE without merges), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in SPECIALS:
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def build_model(shape: str, tiny: bool, seed: int = 0):
    """A randomly initialised causal LM of ``shape`` (float32, on the CPU)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = {**SHAPES[shape], **(TINY[shape] if tiny else {})}
    model_type = spec.pop("model_type")
    ids = {"bos_token_id": 256, "eos_token_id": 257, "pad_token_id": 258}
    config = AutoConfig.for_model(model_type, **spec, **ids)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def clinical_texts() -> list[str]:
    """The bundled ACI-BENCH train dialogues (real clinical text, shipped with medprune)."""
    from medprune.data.licensed import licensed_path

    data = json.loads(licensed_path("aci_train").read_text(encoding="utf-8"))["data"]
    return [d["src"] for d in data]


def mcq_items(n: int):
    from medprune.data.licensed import licensed_path
    from medprune.evaluate.formats import load_mcq

    return load_mcq(licensed_path("pubmedqa_dev"), n, fmt="pubmedqa")


@dataclass
class Step:
    """What one timed step produced, for the JSON."""

    seconds: float
    peak_gpu_bytes: int | None
    error: str | None = None


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, Step]:
    """Run ``fn`` with the peak GPU memory counter reset; errors are recorded, not raised."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        out, error = fn(), None
    except Exception as exc:  # a failing step is a result: record it and go on
        out = None
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    return out, Step(round(seconds, 3), peak, error)


def mask_checks(model, row: dict[str, Any], dense_config) -> dict[str, Any]:
    """What must hold after pruning: per-linear sparsity, the N:M pattern, smaller configs."""
    from medprune.prune.apply import prunable_linears

    linears = prunable_linears(model.model.layers, ())
    out: dict[str, Any] = {"linears": len(linears)}
    if row["method"] in ("wanda", "sparsegpt") and row.get("pattern") == "2:4":
        bad = [
            n
            for n, lin in linears.items()
            if not ((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1) <= 2).all()
        ]
        out["nm_violations"] = bad[:5]
        out["ok"] = not bad
    elif row["method"] in ("wanda", "sparsegpt"):
        shares = [float((lin.weight == 0).float().mean()) for lin in linears.values()]
        out["min_sparsity"], out["max_sparsity"] = round(min(shares), 4), round(max(shares), 4)
        out["ok"] = min(shares) >= row["sparsity"] - 0.01
    elif row["method"] == "width":
        before = (dense_config.intermediate_size, dense_config.num_attention_heads)
        after = (model.config.intermediate_size, model.config.num_attention_heads)
        out["intermediate_size"], out["num_attention_heads"] = after[0], after[1]
        out["ok"] = after[0] <= before[0] and after[1] <= before[1] and after != before
    else:
        out["num_hidden_layers"] = model.config.num_hidden_layers
        out["ok"] = model.config.num_hidden_layers < dense_config.num_hidden_layers
    return out


def reload_check(
    model, tok, out_dir: Path, probe: torch.Tensor, device: torch.device
) -> dict[str, Any]:
    """Save, reload, compare the logits of both on the device (float32)."""
    from medprune.load.model import load_model, save_model

    save_model(model, tok, out_dir)
    back, _ = load_model(out_dir, device=device)
    with torch.no_grad():
        b = back(input_ids=probe.to(device), use_cache=False).logits
        del back
        a = model.to(device)(input_ids=probe.to(device), use_cache=False).logits
    model.to("cpu")
    diff = float((a - b).abs().max())
    return {"max_abs_logit_diff": diff, "ok": diff == 0.0}


def check_shape(
    name: str, dense, tok, args: argparse.Namespace, device: torch.device, work: Path
) -> dict[str, Any]:
    from medprune.config import PruneConfig, RecoverConfig
    from medprune.evaluate.mcq import score_mcq
    from medprune.prune.engine import prune_model
    from medprune.recover.data import pack_text

    texts = clinical_texts()
    probe = tok(texts[0][:400], return_tensors="pt").input_ids
    result: dict[str, Any] = {
        "config": {
            k: getattr(dense.config, k, None)
            for k in (
                "model_type",
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
            )
        },
        "params": sum(p.numel() for p in dense.parameters()),
        "rows": {},
    }
    say = print if not args.quiet else (lambda *_: None)
    calibration = {
        "num_samples": args.calib_samples,
        "seq_len": args.calib_seq_len,
        "batch_size": args.calib_batch,
    }
    recover_source = None
    for row_name, row in ROWS.items():
        say(f"[{name}] prune {row_name}")
        cfg = PruneConfig(**row, calibration=calibration)
        model = copy.deepcopy(dense)
        pruned, step = timed(
            device,
            lambda model=model, cfg=cfg: (
                prune_model(model, tok, cfg, calib_texts=texts, device=device).model
            ),
        )
        entry: dict[str, Any] = {"prune": step.__dict__}
        if pruned is not None:
            entry["params_after"] = sum(p.numel() for p in pruned.parameters())
            entry["masks"] = mask_checks(pruned, row, dense.config)
            saved = work / f"{name}-{row_name.replace(':', '-')}"
            check, step = timed(
                device, lambda p=pruned, s=saved: reload_check(p, tok, s, probe, device)
            )
            entry["reload"] = {**step.__dict__, **(check or {})}
            if row_name == RECOVER_ROW and check is not None:
                recover_source = (pruned, saved)
        result["rows"][row_name] = entry
        del model

    rec_cfg = RecoverConfig(
        steps=args.recover_steps,
        lr=1e-4,
        batch_size=args.recover_batch,
        seq_len=args.recover_seq_len,
        log_every=1000,
        mixed_precision=args.mixed_precision,
        distill={"enabled": True},
    )
    examples = pack_text(
        tok, "aci", list(enumerate(({"text": t} for t in texts), 1)), rec_cfg.seq_len
    )
    evaluated = dense
    if recover_source is not None:
        from medprune.recover.train import recover_model

        say(f"[{name}] recover {RECOVER_ROW}: {args.recover_steps} steps")
        pruned, saved = recover_source
        teacher = copy.deepcopy(dense)
        rec, step = timed(
            device,
            lambda: recover_model(
                pruned, tok, examples, rec_cfg, teacher=teacher, nm=(2, 4), reference_dir=saved
            ),
        )
        result["recovery"] = {"row": RECOVER_ROW, **step.__dict__}
        if rec is not None:
            result["recovery"].update(
                steps=rec.report.get("steps"),
                final_loss=rec.report.get("final_loss"),
                # recover_model itself refuses a leak; checked here again on the result
                masks=mask_checks(rec.model, ROWS[RECOVER_ROW], dense.config),
            )
            evaluated = rec.model
        del teacher
    items = mcq_items(args.eval_items)
    for label, model in (("dense", dense), (RECOVER_ROW, evaluated)):
        if label != "dense" and model is dense:
            continue
        say(f"[{name}] evaluate {label}: {len(items)} items")

        def run_eval(model=model):
            on_device = model.to(device)
            out = score_mcq(on_device, tok, items, batch_size=args.eval_batch, max_length=2048)
            model.to("cpu")
            return out

        scored, step = timed(device, run_eval)
        result.setdefault("evaluation", {})[label] = {
            **step.__dict__,
            "items": len(items),
            "acc": None if scored is None else scored.acc,
        }
    return result


def failures(results: dict[str, Any]) -> list[str]:
    """Every step that raised or whose check did not hold, as ``model/row/step``."""
    bad = []
    for shape, res in results["models"].items():
        if res.get("error"):
            bad.append(f"{shape}: {res['error'].splitlines()[0]}")
            continue
        for row, entry in res["rows"].items():
            for key in ("prune", "reload"):
                if key in entry and entry[key].get("error"):
                    bad.append(f"{shape}/{row}/{key}")
            if "masks" in entry and not entry["masks"]["ok"]:
                bad.append(f"{shape}/{row}/masks")
            if "reload" in entry and entry["reload"].get("ok") is False:
                bad.append(f"{shape}/{row}/reload")
        rec = res.get("recovery", {})
        if rec.get("error") or ("masks" in rec and not rec["masks"]["ok"]):
            bad.append(f"{shape}/recovery")
        for label, ev in res.get("evaluation", {}).items():
            if ev.get("error"):
                bad.append(f"{shape}/evaluation/{label}")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="llama3-1b,gemma3-1b", help="comma-separated")
    p.add_argument("--tiny", action="store_true", help="test-size models of the same families")
    p.add_argument("--smollm2", default=None, help="folder of the converted SmolLM2, if present")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--calib-samples", type=int, default=None)
    p.add_argument("--calib-seq-len", type=int, default=None)
    p.add_argument("--calib-batch", type=int, default=8)
    p.add_argument("--recover-steps", type=int, default=None)
    p.add_argument("--recover-batch", type=int, default=4)
    p.add_argument("--recover-seq-len", type=int, default=None)
    p.add_argument("--mixed-precision", choices=["auto", "bf16", "no"], default="auto")
    p.add_argument("--eval-items", type=int, default=None)
    p.add_argument("--eval-batch", type=int, default=16)
    p.add_argument("--json", required=True, help="file, or folder for a new dated file")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    full = not args.tiny
    args.calib_samples = args.calib_samples or (64 if full else 8)
    args.calib_seq_len = args.calib_seq_len or (512 if full else 64)
    args.recover_steps = args.recover_steps or (20 if full else 2)
    args.recover_seq_len = args.recover_seq_len or (512 if full else 64)
    args.eval_items = args.eval_items or (300 if full else 12)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from medprune.io.atomic import atomic_write_json

    from run_info import results_path, run_info

    device = torch.device(args.device)
    info = run_info()
    results: dict[str, Any] = {
        "run": info,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_cuda": torch.version.cuda,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "quiet")},
        "models": {},
    }
    out_path = results_path(args.json, "gpu-check", info)
    tok = byte_tokenizer()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        todo: list[tuple[str, Callable[[], Any]]] = [
            (s, lambda s=s: (build_model(s, args.tiny), tok)) for s in args.shapes.split(",") if s
        ]
        if args.smollm2:
            from medprune.load.model import load_model

            todo.append(("smollm2-135m", lambda: load_model(args.smollm2)))
        for name, make in todo:
            made, step = timed(torch.device("cpu"), make)
            if made is None:
                results["models"][name] = {"error": step.error}
                continue
            model, model_tok = made
            results["models"][name] = {"build_seconds": step.seconds}
            results["models"][name].update(
                check_shape(name, model, model_tok, args, device, Path(tmp))
            )
            results["total_seconds"] = round(time.perf_counter() - start, 1)
            atomic_write_json(out_path, results)  # after every model: a cut run keeps them
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    results["failures"] = failures(results)
    atomic_write_json(out_path, results)
    print(
        f"wrote {out_path} ({results['total_seconds']} s); failures: {results['failures'] or 'none'}"
    )
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
