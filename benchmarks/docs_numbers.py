"""Render docs/pruning-pattern.md from its template and the benchmark results files.

    python benchmarks/docs_numbers.py           # rewrite docs/pruning-pattern.md
    python benchmarks/docs_numbers.py --check   # exit 1 if the guide differs (make docs-numbers)

Every measured number in the pattern guide is a ``{{name}}`` in
``docs/pruning-pattern.template.md``, filled here from one file in ``benchmarks/results``.
Each row comes from the **latest** results file that measured it at the guide's setting
(the pruning rows at 64 x 256 calibration tokens, the current defaults; files are ordered
by the UTC start time in their names), and the guide names that file next to the number.
``tests/benchmarks/test_docs_numbers.py`` renders the guide again and fails when the
committed guide differs, so a number edited by hand, or a new run that supersedes one, is
caught.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "docs" / "pruning-pattern.template.md"
GUIDE = ROOT / "docs" / "pruning-pattern.md"
LINK = "../benchmarks/results/"

# Stated assumptions of the energy estimate (not measurements; the guide says so).
WATTS_PER_VCPU = 4.26
NOTE_TOKENS = 512
SUMMARY_TOKENS = 128
MCQ_ITEMS_FOR_SE = 300

# The guide's pruning setting: the current default calibration size.
CALIBRATION = {"num_samples": 64, "seq_len": 256}


@dataclass(frozen=True)
class Row:
    file: str
    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def link(self) -> str:
        return f"[{self.file}]({LINK}{self.file})"


def _files(prefix: str) -> list[Path]:
    # names are PREFIX-<UTC start>-<commit>.json: sorted by name is sorted by start time
    return sorted(RESULTS.glob(f"{prefix}-2*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def latest_pruning(name: str) -> Row:
    """The row ``name`` of the latest pruning run that measured it at :data:`CALIBRATION`."""
    for path in reversed(_files("pruning")):
        for r in _load(path)["rows"]:
            settings = r.get("settings") or {}
            if r["name"] == name and all(settings.get(k) == v for k, v in CALIBRATION.items()):
                return Row(path.name, r)
    raise LookupError(f"no pruning results file has the row {name!r} at {CALIBRATION}")


def pruning_dense(row: Row) -> Row:
    """The dense row of the same run as ``row``."""
    data = _load(RESULTS / row.file)
    return Row(row.file, next(r for r in data["rows"] if r["name"] == "dense"))


def latest_recovery(match: Callable[[dict[str, Any]], bool], what: str) -> Row:
    for path in reversed(_files("recovery")):
        for r in _load(path)["rows"]:
            if match(r):
                return Row(path.name, r)
    raise LookupError(f"no recovery results file has {what}")


def serving_model(data: dict[str, Any]) -> str:
    """The model a serving results file measured: ``run.model.name`` where recorded, else the
    folder of its ``--model`` (files from before the model was recorded: SmolLM2)."""
    recorded = (data.get("run", {}).get("model") or {}).get("name")
    model = data.get("args", {}).get("model") or "smollm2-135m-instruct"
    return str(recorded or Path(model).name)


def latest_serving(match: Callable[[dict[str, Any], dict[str, Any]], bool], what: str) -> Row:
    """The first row ``match`` accepts in the latest SmolLM2 serving file (the guide is about
    SmolLM2; a Gemma 3 file never supersedes it)."""
    for path in reversed(_files("serving")):
        data = _load(path)
        if not serving_model(data).startswith("smollm2"):
            continue
        for r in data["rows"]:
            if match(data, r):
                return Row(path.name, {**r, "_args": data.get("args", {})})
    raise LookupError(f"no serving results file has {what}")


def _command_value(file: str, flag: str) -> str:
    command = _load(RESULTS / file)["run"]["command"]
    m = re.search(rf"{re.escape(flag)}[ =](\S+)", command)
    if not m:
        raise LookupError(f"{file}: its command has no {flag}")
    return m.group(1)


def run_setting(file: str, key: str, flag: str) -> str:
    """A setting of the run that wrote ``file``: from ``run.settings`` (recorded runs), else
    from its command line (runs converted from before settings were recorded)."""
    settings = _load(RESULTS / file)["run"].get("settings") or {}
    return str(settings[key]) if key in settings else _command_value(file, flag)


def f1(x: float) -> str:
    return f"{x:.1f}"


def f2(x: float) -> str:
    return f"{x:.2f}"


def f3(x: float) -> str:
    return f"{x:.3f}"


def x2(x: float) -> str:
    return f"{x:.2f}x"


def ppl(x: float) -> str:
    return f"{x:.2f}" if x < 100 else (f"{x:.1f}" if x < 1000 else f"{x:.0f}")


def params_m(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def points(a: float, b: float) -> str:
    return f"{(a - b) * 100:.1f}"


def _pruning_table(rows: list[tuple[str, Row]], dense: Row) -> str:
    lines = [
        "| method | parameters | disk (bf16) | perplexity | MCQ acc | tok/s vs dense "
        "| pruning time | peak memory while pruning / model |",
        "|---|---|---|---|---|---|---|---|",
        f"| dense | {params_m(dense['params'])} | {f1(dense['size_on_disk_mb'])} MB "
        f"| {ppl(dense['perplexity'])} | {f3(dense['mcq_accuracy'])} | 1.00 | - | - |",
    ]
    for label, r in rows:
        same_shape = r["params"] == dense["params"]
        nz = f" ({params_m(r['nonzero_params'])} non-zero)" if same_shape else ""
        speed = (
            f"{f2(r['speedup'])} (same shapes: no gain)"
            if same_shape
            else f"**{x2(r['speedup'])}**"
        )
        lines.append(
            f"| {label} | {params_m(r['params'])}{nz} | {f1(r['size_on_disk_mb'])} MB "
            f"| {ppl(r['perplexity'])} | {f3(r['mcq_accuracy'])} | {speed} "
            f"| {f1(r['prune_time_s'])} s | {x2(r['peak_over_model'])} |"
        )
    return "\n".join(lines)


def numbers() -> dict[str, str]:
    """Every ``{{name}}`` of the template, as it is written in the guide."""
    n: dict[str, str] = {}

    # -- pruning: the current one-pass defaults (latest full-size run) ------------------
    wanda, sgpt = latest_pruning("wanda 50%"), latest_pruning("sparsegpt 50%")
    d6 = pruning_dense(wanda)
    assert pruning_dense(sgpt).file == d6.file, "Wanda and SparseGPT come from one run"
    n["unstructured_file"] = d6.link
    n["unstructured_mcq_items"] = run_setting(d6.file, "mcq_items", "--mcq-items")
    n["unstructured_ppl_texts"] = run_setting(d6.file, "ppl_texts", "--ppl-texts")
    n["table_unstructured"] = _pruning_table(
        [("Wanda 50% (unstructured)", wanda), ("SparseGPT 50% (unstructured)", sgpt)],
        d6,
    )
    n["wanda_points_lost"] = points(d6["mcq_accuracy"], wanda["mcq_accuracy"])
    n["wanda_acc"], n["dense6_acc"] = f3(wanda["mcq_accuracy"]), f3(d6["mcq_accuracy"])
    n["sgpt_acc"] = f3(sgpt["mcq_accuracy"])
    n["unstructured_peak"] = f"{f2(wanda['peak_over_model'])}x / {x2(sgpt['peak_over_model'])}"
    speeds6 = [wanda["speedup"], sgpt["speedup"]]
    n["unstructured_speed_range"] = f"{f2(min(speeds6))}x-{x2(max(speeds6))}"

    # -- pruning: the other rows, from the latest run that measured each ----------------
    width25, depth25 = latest_pruning("width -25% params"), latest_pruning("depth -25% layers")
    width50 = latest_pruning("width -50% params")
    sgpt24, mag50 = latest_pruning("sparsegpt 2:4"), latest_pruning("magnitude 50%")
    d1 = pruning_dense(width25)
    d50 = pruning_dense(width50)
    for r in (depth25, sgpt24, mag50):
        assert r.file == width25.file, (
            f"{r['name']} is no longer from {width25.file}: revise the guide"
        )
    n["other_file"], n["width50_file"] = d1.link, width50.link
    n["other_mcq_items"] = run_setting(d1.file, "mcq_items", "--mcq-items")
    assert run_setting(d50.file, "mcq_items", "--mcq-items") == n["other_mcq_items"]
    n["table_other"] = _pruning_table(
        [
            ("SparseGPT 2:4", sgpt24),
            ("magnitude 50%", mag50),
            ("width -25% parameters", width25),
            ("depth -25% layers", depth25),
        ],
        d1,
    )
    n["table_width50"] = _pruning_table([("width -50% parameters", width50)], d50)
    n["depth25_speed"], n["width25_speed"] = x2(depth25["speedup"]), x2(width25["speedup"])
    n["width50_speed"] = x2(width50["speedup"])
    n["width50_ppl"] = ppl(width50["perplexity"])
    n["width25_mb"], n["dense1_mb"] = (
        f"{width25['size_on_disk_mb']:.0f}",
        f"{d1['size_on_disk_mb']:.0f}",
    )
    n["mag50_acc"], n["dense1_acc"] = f3(mag50["mcq_accuracy"]), f3(d1["mcq_accuracy"])
    n["mag50_points_lost"] = f"{(d1['mcq_accuracy'] - mag50['mcq_accuracy']) * 100:.0f}"
    n["width25_ppl"], n["dense1_ppl"] = ppl(width25["perplexity"]), ppl(d1["perplexity"])
    n["width25_ppl_ratio"] = f"{width25['perplexity'] / d1['perplexity']:.1f}"
    n["width25_acc_pct"] = f"{width25['mcq_accuracy'] * 100:.1f}"
    n["width25_acc"], n["depth25_acc"] = f3(width25["mcq_accuracy"]), f3(depth25["mcq_accuracy"])
    n["structured_points_lost"] = (
        f"{points(d1['mcq_accuracy'], width25['mcq_accuracy'])}-"
        f"{points(d1['mcq_accuracy'], depth25['mcq_accuracy'])}"
    )
    n["unstructured_points_lost"] = (
        f"{points(d6['mcq_accuracy'], sgpt['mcq_accuracy'])}-"
        f"{points(d6['mcq_accuracy'], wanda['mcq_accuracy'])}"
    )
    n["depth25_time"], n["width25_time"] = f1(depth25["prune_time_s"]), f1(width25["prune_time_s"])
    n["depth_time_ratio"] = f"{width25['prune_time_s'] / depth25['prune_time_s']:.0f}"
    structured = [depth25["speedup"], width25["speedup"], width50["speedup"]]
    n["structured_speed_range"] = f"{f2(min(structured))}x-{x2(max(structured))}"
    run1_same = [
        r["speedup"]
        for r in _load(RESULTS / d1.file)["rows"]
        if r["name"] != "dense" and r["params"] == d1["params"]
    ]
    n["run1_unstructured_speed_range"] = f"{f2(min(run1_same))}x-{x2(max(run1_same))}"

    # -- recovery ------------------------------------------------------------------------
    rw = latest_recovery(lambda r: r["row"] == "wanda-50", "the wanda-50 row")
    rwd = latest_recovery(
        lambda r: r["method"] == "width" and (r.get("settings") or {}).get("lr") == 2e-4,
        "a width row at lr 2e-4",
    )
    n["recovery_budget"] = _command_value(rw.file, "--budget-minutes")
    assert _command_value(rwd.file, "--budget-minutes") == n["recovery_budget"]
    n["recovery_wanda_file"], n["recovery_width_file"] = rw.link, rwd.link
    n["recovery_dense_ppl"] = ppl(rw["ppl_dense"])
    for key, r in (("rec_wanda", rw), ("rec_width", rwd)):
        n[f"{key}_ppl"] = " / ".join(
            ppl(r[k]) for k in ("ppl_dense", "ppl_pruned", "ppl_recovered")
        )
        n[f"{key}_acc"] = " / ".join(f3(r[k]) for k in ("acc_dense", "acc_pruned", "acc_recovered"))
    n["rec_width_acc_recovered"] = f3(rwd["acc_recovered"])
    n["rec_width_acc_pruned"] = f3(rwd["acc_pruned"])
    n["rec_width_ppl_ratio_pruned"] = f"{rwd['ppl_pruned'] / rwd['ppl_dense']:.1f}"
    se = math.sqrt(rw["acc_dense"] * (1 - rw["acc_dense"]) / MCQ_ITEMS_FOR_SE)
    n["mcq_items_se"], n["acc_se_points"] = str(MCQ_ITEMS_FOR_SE), f"{se * 100:.1f}"

    # -- serving (GGUF): the latest run at the script's default quality settings ----------
    sv = latest_serving(
        lambda data, r: r["row"] == "dense" and data.get("args", {}).get("ppl_texts") == 20,
        "a dense row with perplexity on 20 texts",
    )
    n["serving_file"] = sv.link
    f16, q8 = sv["files_mb"]["f16"], sv["files_mb"]["q8_0"]
    n["f16_mb"], n["q8_mb"], n["q8_ratio"] = f1(f16), f1(q8), f2(q8 / f16)
    n["ppl_hf"], n["ppl_q8"] = f3(sv["ppl_hf"]), f3(sv["ppl_q8_0"])
    lg = sv["logits"]
    n["f16_dlogit"] = f"{f3(lg['f16']['max_abs'])} / {f3(lg['f16']['mean_abs'])}"
    n["q8_dlogit"] = f"{f3(lg['q8_0']['max_abs'])} / {f3(lg['q8_0']['mean_abs'])}"
    n["f16_agree"] = f"{lg['f16']['top1_agree'] * 100:.0f}%"
    n["q8_agree"] = f"{lg['q8_0']['top1_agree'] * 100:.1f}%"
    n["serving_ppl_texts"] = str(sv["_args"]["ppl_texts"])
    n["serving_seq_len"] = str(sv["_args"]["seq_len"])

    gen = latest_serving(
        lambda data, r: r["row"] == "dense" and "gen_tok_cpu_s" in (r.get("hf_speed") or {}),
        "generated tokens per CPU second",
    )
    n["gen_file"] = gen.link
    gen_rate = gen["hf_speed"]["gen_tok_cpu_s"]
    n["gen_tok_cpu_s"] = f2(gen_rate)
    per_summary = SUMMARY_TOKENS / gen_rate
    n["summary_cpu_s"] = f1(per_summary)
    n["summaries_cpu_s"] = f"{per_summary * 1000:,.0f}"
    gen_wh = per_summary * 1000 * WATTS_PER_VCPU / 3600
    n["summaries_wh"] = f1(gen_wh)

    # -- energy per 1,000 notes: each row's tokens/s from its own file -------------------
    n["watts"], n["note_tokens"], n["summary_tokens"] = (
        f"{WATTS_PER_VCPU:.2f}",
        str(NOTE_TOKENS),
        str(SUMMARY_TOKENS),
    )
    n["note_tokens_1000"] = f"{NOTE_TOKENS * 1000:,}"
    # tokens/s: the dense model's in the run of the quarter-pruned rows, times each row's
    # speed-up against the dense model of its own run (runs on a shared machine differ in
    # absolute speed, so only ratios within one run are compared)
    energy = [
        "| model | speed-up (results file) | tokens/s (1 thread) | CPU time per 1,000 notes "
        "| energy per 1,000 notes |",
        "|---|---|---|---|---|",
    ]
    dense_wh = 0.0
    for label, r in (
        ("dense", d1),
        ("depth -25% layers", depth25),
        ("width -25% parameters", width25),
        ("width -50% parameters", width50),
    ):
        tps = d1["tokens_per_s"] * r["speedup"]
        secs = NOTE_TOKENS * 1000 / tps
        wh = secs * WATTS_PER_VCPU / 3600
        if label == "dense":
            dense_wh = wh
        energy.append(
            f"| {label} | {x2(r['speedup'])} ({r.link}) | {tps:.0f} | {secs:,.0f} s | {wh:.2f} Wh |"
        )
    n["table_energy"] = "\n".join(energy)
    n["dense_tok_s"] = f"{d1['tokens_per_s']:.0f}"
    n["total_wh"] = f"{gen_wh + dense_wh:.0f}"
    return n


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


def render(template: str, values: dict[str, str]) -> str:
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise KeyError(f"{TEMPLATE.name}: no value for {missing}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def rendered_guide() -> str:
    return render(TEMPLATE.read_text(encoding="utf-8"), numbers())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the guide is out of date")
    args = ap.parse_args(argv)
    text = rendered_guide()
    if args.check:
        if GUIDE.read_text(encoding="utf-8") != text:
            print(f"{GUIDE} is out of date: run `make docs-numbers`", file=sys.stderr)
            return 1
        return 0
    GUIDE.write_text(text, encoding="utf-8")
    print(f"wrote {GUIDE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
