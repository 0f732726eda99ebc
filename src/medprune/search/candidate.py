"""One candidate at one rung: prune (or reuse the cached pruned model), recover for the
rung's budget (continuing the previous rung's model), evaluate on the rung's search items,
and at rung 0 measure the KL divergence to the dense model. Reuses the pipeline's stage
functions; every product lands in the cache under a hash of what made it, so a rerun or a
resumed search does no work twice. A candidate that fails is returned as failed, with its
error, and the search goes on.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from pathlib import Path

import torch

from medprune.config import RunConfig
from medprune.evaluate.runner import evaluation_settings, read_predictions, read_results
from medprune.io.atomic import atomic_write_json
from medprune.progress import Progress
from medprune.search.state import Workspace

DONE = "medprune_cache.json"  # written last into every cache entry: its presence = complete


def content_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_entry(path: Path) -> dict | None:
    """The metadata of a complete cache entry, or None."""
    meta = path / DONE
    return json.loads(meta.read_text()) if meta.is_file() else None


def cached(path: Path, make, progress: Progress) -> tuple[dict, bool]:
    """``make(dir) -> metadata`` into ``path`` unless it is already there; returns the
    metadata (with ``cpu_seconds``, what making it cost) and whether it came from the cache.

    The entry is written in place and finished by :data:`DONE` (a file rename), so it works
    on Cloud Storage FUSE, which does not rename directories; an entry without it is the
    leftover of an interrupted attempt and is made again."""
    import shutil

    found = cache_entry(path)
    if found is not None:
        progress(f"cache hit: {path}")
        return found, True
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    t0 = time.process_time()
    meta = make(path)
    meta["cpu_seconds"] = time.process_time() - t0
    atomic_write_json(path / DONE, meta)
    return meta, False


def with_sections(cfg: RunConfig, **sections) -> RunConfig:
    data = json.loads(cfg.to_json())
    for key, value in sections.items():
        data[key] = value
    if "evaluate" in sections and "gate" not in sections:
        data["gate"] = _gate_on(data["gate"], data["evaluate"])
    return RunConfig.model_validate(data)


def _gate_on(gate: dict, evaluate: dict) -> dict:
    """The gate without the parts about sources ``evaluate`` does not score (a rung
    evaluates only its slice of evaluate.mcq; certification scores every source)."""
    names = {s["name"] for s in evaluate.get("mcq_sources") or []}
    if evaluate.get("visit_notes"):
        names.add("visit_notes")
    gate = dict(gate)
    gate["source_non_inferiority"] = {
        k: v for k, v in (gate.get("source_non_inferiority") or {}).items() if k in names
    }
    for key in ("floors", "ceilings", "max_drop", "max_increase"):
        gate[key] = {
            m: v
            for m, v in (gate.get(key) or {}).items()
            if "@" not in m or m.partition("@")[2] in names
        }
    return gate


def rung_eval_config(cfg: RunConfig, items_file: str, ppl_texts: int) -> dict:
    """The evaluate section used at a search rung: the rung's items, perplexity on the
    first ``ppl_texts`` texts (or none), no generation and no other MCQ sources (the
    certification evaluation runs everything the gate checks)."""
    ev = json.loads(cfg.evaluate.model_dump_json())
    ev["mcq"] = str(items_file)
    ev["max_items"] = None
    ev["summarization"] = None
    for key, off in (("mcq_sources", []), ("visit_notes", None)):  # other tasks: certification only
        if key in ev:
            ev[key] = off
    if isinstance(ev.get("judge"), dict):
        ev["judge"]["enabled"] = False  # judges visit notes, which rungs do not generate
    if ppl_texts and ev.get("perplexity"):
        ev["max_ppl_texts"] = ppl_texts
    else:
        ev["perplexity"] = None
    return ev


@torch.no_grad()
def kl_to_dense(
    dense_dir: str | Path, model_dir: str | Path, texts: list[str], n: int, seq_len: int
) -> float:
    """Mean per-token KL(dense || candidate) of the next-token distributions on ``n``
    sequences of ``seq_len`` tokens cut from ``texts`` (the calibration text)."""
    from medprune.load.model import load_model
    from medprune.prune.calibration import calibration_token_ids

    dense, tokenizer = load_model(dense_dir, dtype="float32")
    ids = calibration_token_ids(tokenizer, texts, n, seq_len)
    ref = [torch.log_softmax(dense(ids[i : i + 1]).logits.float(), -1) for i in range(n)]
    del dense
    model, _ = load_model(model_dir, dtype="float32")
    total = 0.0
    for i in range(n):
        logq = torch.log_softmax(model(ids[i : i + 1]).logits.float(), -1)
        total += float((ref[i].exp() * (ref[i] - logq)).sum(-1).mean())
    return total / n


def paired_difference(baseline_preds: list[dict], candidate_preds: list[dict]) -> dict:
    """Accuracy difference (candidate - dense) and discordance on the candidate's items."""
    base = {str(p["id"]): bool(p["correct"]) for p in baseline_preds}
    cand = {str(p["id"]): bool(p["correct"]) for p in candidate_preds}
    missing = sorted(set(cand) - set(base))
    if missing:
        raise ValueError(f"the dense model's search evaluation lacks items {missing[:5]}")
    ids = sorted(cand)
    b = sum(1 for i in ids if base[i] and not cand[i])
    c = sum(1 for i in ids if cand[i] and not base[i])
    n = len(ids)
    return {
        "n_items": n,
        "accuracy": sum(cand[i] for i in ids) / n,
        "baseline_accuracy": sum(base[i] for i in ids) / n,
        "difference": (c - b) / n,
        "discordance": (b + c) / n,
        "baseline_only": b,
        "candidate_only": c,
    }


def objective_value(objective: str, prune_meta: dict, results: dict) -> float | None:
    eff = results.get("efficiency", {})
    if objective == "params":
        return prune_meta.get("total_params")
    if objective == "nonzero_params":
        return prune_meta.get("nonzero_params")
    return eff.get(objective)


def uses_dense_statistics(prune_cfg) -> bool:
    """Whether pruning with ``prune_cfg`` reads the dense model's calibration statistics
    (calibrated methods and OWL allocation; magnitude with uniform sparsity does not)."""
    from medprune.prune.methods import get_method

    return get_method(prune_cfg.method).needs_calibration or prune_cfg.allocation.kind == "owl"


def run_candidate(
    cfg: RunConfig, task: dict, workspace: Workspace, *, progress: Progress = print
) -> dict:
    """Run one task of a search batch; never raises for a candidate's own failure."""
    if task.get("kind") == "noop":
        return {"kind": "noop"}
    t0, w0 = time.process_time(), time.perf_counter()
    base = {
        "kind": "candidate",
        "id": task["id"],
        "rung": int(task["rung"]),
        "label": task["label"],
    }
    try:
        out = _run(cfg, task, workspace, progress)
        status = {"status": "ok"}
    except Exception as exc:  # the search goes on; the error is recorded with the candidate
        progress(f"candidate {task['label']} failed at rung {task['rung']}: {exc}")
        out, status = (
            {},
            {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            },
        )
    return {
        **base,
        **out,
        **status,
        "cpu_seconds": time.process_time() - t0,
        "wall_seconds": time.perf_counter() - w0,
    }


def _run(cfg: RunConfig, task: dict, ws: Workspace, progress: Progress) -> dict:
    from medprune.evaluate.stage import stage_evaluate
    from medprune.prune.stage import stage_prune
    from medprune.recover.stage import stage_recover
    from medprune.search.remote import localize_data
    from medprune.search.space import step_config

    cfg = localize_data(cfg)  # gs:// data: through the FUSE mount, else downloaded
    sc = cfg.search
    assert sc is not None
    cache = ws.candidate_dir(task["id"])
    dense = ws.dense_model
    rung = int(task["rung"])
    cached_cpu = 0.0
    pieces: dict[str, float] = {}  # every cache entry this task used: what it cost when made
    steps = task["steps"]
    last_prune = step_config(cfg, steps[-1])

    def prune(tmp: Path) -> dict:
        src: str | Path = dense
        reports: list[dict] = []
        for i, step in enumerate(steps):
            out = tmp / ("model" if i == len(steps) - 1 else f"step{i}")
            progress(f"pruning {task['label']}: step {i + 1}/{len(steps)}")
            pc = step_config(cfg, step)
            shared = (
                None  # the dense statistics fit the first step only (later ones see a pruned model)
            )
            if i == 0 and ws.dense_calibration and uses_dense_statistics(pc):
                from medprune.prune import DenseCalibration

                shared = DenseCalibration.load(ws.dense_calibration)
            report = stage_prune(
                with_sections(cfg, prune=json.loads(pc.model_dump_json())),
                src,
                out,
                progress=progress,
                dense=shared,
            )
            reports.append(
                {
                    k: v
                    for k, v in report.items()
                    if k not in ("layers", "settings", "plan_search", "kept")
                }
            )
            src = out
        for i in range(len(steps) - 1):
            import shutil

            shutil.rmtree(tmp / f"step{i}", ignore_errors=True)
        final = reports[-1]
        return {
            "steps": steps,
            "reports": reports,
            "total_params": final["total_params"],
            "nonzero_params": final["nonzero_params"],
            "sparsity": final["sparsity"],
        }

    prune_meta, hit = cached(cache / "pruned", prune, progress)
    cached_cpu += prune_meta["cpu_seconds"] if hit else 0.0
    pieces[str(cache / "pruned")] = prune_meta["cpu_seconds"]
    model_dir = cache / "pruned" / "model"

    # recovery, rung by rung: rung r continues rung r-1's model
    rcfg = with_sections(cfg, prune=json.loads(last_prune.model_dump_json()))
    recovery_key: list = []
    recover_reports: list[dict] = []
    caps = task.get("recover_caps") or {}  # minutes the CPU budget left (plan.cap_recovery)
    for r in range(1, rung + 1):
        rc = sc.rungs[r]
        if rc.recover_steps == 0 or not cfg.recover.enabled:
            continue
        data = json.loads(cfg.recover.model_dump_json())
        key = {
            "rung": r,
            "steps": rc.recover_steps,
            "minutes": rc.recover_minutes,
            "recover": json.loads(cfg.recover.model_dump_json()),
        }
        minutes = rc.recover_minutes
        cap = caps.get(str(r))
        if cap is not None:
            if cap <= 0:
                recover_reports.append({"rung": r, "skipped": "the CPU budget was spent"})
                continue
            minutes = cap  # counted in process CPU time, as the search's budget is
            data["budget_clock"] = "cpu"
            key.update(minutes=cap, capped_by_budget=True, recover=data)
        recovery_key.append(key)
        entry = cache / f"recovered-{content_hash(recovery_key)}"
        data = dict(data, steps=rc.recover_steps, max_minutes=minutes, checkpoint_dir=None)
        step_cfg = with_sections(rcfg, recover=data)
        src = model_dir

        def recover(tmp: Path, step_cfg=step_cfg, src=src, r=r) -> dict:
            progress(f"recovering {task['label']} for rung {r}: {step_cfg.recover.steps} steps")
            report = stage_recover(
                step_cfg, src, tmp / "model", teacher_dir=dense, progress=progress
            )
            return {"rung": r, "report": {k: v for k, v in report.items() if k != "losses"}}

        meta, hit = cached(entry, recover, progress)
        cached_cpu += meta["cpu_seconds"] if hit else 0.0
        pieces[str(entry)] = meta["cpu_seconds"]
        recover_reports.append({"rung": r, **meta["report"]})
        model_dir = entry / "model"

    rung_cfg = sc.rungs[rung]
    ev = rung_eval_config(cfg, ws.slices[rung], rung_cfg.ppl_texts)
    ecfg = with_sections(cfg, evaluate=ev)
    model_key = model_dir.parent.name
    eval_entry = (
        cache
        / f"eval-{model_key}-{content_hash(evaluation_settings(ecfg.evaluate, cfg.model.dtype))}"
    )

    def evaluate(tmp: Path) -> dict:
        stage_evaluate(
            ecfg, model_dir, tmp, label=f"{task['label']} rung {rung}", progress=progress
        )
        return {"model_dir": str(model_dir)}

    meta, hit = cached(eval_entry, evaluate, progress)
    cached_cpu += meta["cpu_seconds"] if hit else 0.0
    pieces[str(eval_entry)] = meta["cpu_seconds"]
    results = read_results(eval_entry)
    preds = read_predictions(eval_entry) or []
    paired = paired_difference(read_predictions(ws.baseline_search_eval) or [], preds)
    out = {
        **paired,
        "model_dir": str(model_dir),
        "eval_dir": str(eval_entry),
        "total_params": prune_meta["total_params"],
        "nonzero_params": prune_meta["nonzero_params"],
        "sparsity": prune_meta["sparsity"],
        "size_bytes": results.get("efficiency", {}).get("size_bytes"),
        "tokens_per_s": results.get("efficiency", {}).get("tokens_per_s"),
        "latency_ms_p50": results.get("efficiency", {}).get("latency_ms_p50"),
        "perplexity": (results.get("perplexity") or {}).get("perplexity"),
        "objective_value": objective_value(sc.objective, prune_meta, results),
        "recovery": recover_reports,
        "cpu_seconds_cached": cached_cpu,
        "pieces": pieces,
    }
    kl_texts = ws.kl_texts
    if rung == 0 and kl_texts:
        kl_entry = cache / f"kl-{content_hash([sc.kl.texts, sc.kl.seq_len, kl_texts])}"

        def kl(tmp: Path) -> dict:
            from medprune.io.jsonl import read_texts
            from medprune.search.remote import local_data_path

            return {
                "kl": kl_to_dense(
                    dense,
                    model_dir,
                    read_texts(local_data_path(kl_texts)),
                    sc.kl.texts,
                    sc.kl.seq_len,
                )
            }

        meta, hit = cached(kl_entry, kl, progress)
        out["kl"] = meta["kl"]
        out["cpu_seconds_cached"] += meta["cpu_seconds"] if hit else 0.0
        pieces[str(kl_entry)] = meta["cpu_seconds"]
    progress(
        f"{task['label']} rung {rung}: accuracy {paired['accuracy']:.3f} vs dense {paired['baseline_accuracy']:.3f} "
        f"({paired['difference']:+.3f}) on {paired['n_items']} items"
        + (f", KL {out['kl']:.4f}" if "kl" in out else "")
    )
    return out
