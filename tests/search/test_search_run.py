"""The search end to end on a tiny random Llama: in process (bisection, certification,
registration, resume from the cache, a failed candidate) and as the kfp.local pipeline
(ParallelFor, Collected, If -> register); bad input exits 2 before any pruning; the search
pipeline compiles for Vertex AI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from medprune.cli import main
from medprune.config import load_config
from medprune.register.local import LocalRegistry

from tests.helpers.search import TERMS, write_search_config
from tests.helpers.tiny import save_tiny_model


def _summary(capsys) -> dict:
    return _summary_and_log(capsys)[0]


def _summary_and_log(capsys) -> tuple[dict, str]:
    out = capsys.readouterr().out
    path = [line for line in out.splitlines() if line.startswith("summary: ")][-1].removeprefix(
        "summary: "
    )
    return json.loads(Path(path).read_text()), out


def _dense_passes(log: str) -> int:
    """Passes over the dense layers that collected calibration statistics (the prune engine
    reports each layer of such a pass as 'dense statistics: layer i/n')."""
    return log.count("dense statistics: layer 1/")


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.slow
def test_search_in_process_certifies_registers_and_resumes(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(tmp_path, model_dir)
    assert main(["search", str(cfg_path), "--run-id", "s1", "--in-process"]) == 0
    s, log = _summary_and_log(capsys)
    # the dense statistics were collected once, in setup, for every candidate (OWL wanda
    # and width read them) ...
    assert _dense_passes(log) == 1
    pruned = [c for c in s["candidates"] if "0" in c["results"]]
    assert any(c["chain"] == "unstructured" for c in pruned) and any(
        c["chain"] == "width" for c in pruned
    )
    # ... and a candidate pruned without them is the same model, bit for bit
    from medprune.prune.stage import stage_prune
    from medprune.search.space import step_config

    cfg = load_config(cfg_path)
    cache = tmp_path / "runs" / "search-cache"
    dense_model = next(cache.glob("dense-*/model"))
    said: list[str] = []
    for c in pruned:
        alone = tmp_path / "alone" / c["id"]
        stage_prune(
            cfg.model_copy(update={"prune": step_config(cfg, c["steps"][0])}),
            dense_model,
            alone,
            progress=said.append,
        )
        got, want = _weights(cache / "candidates" / c["id"] / "pruned" / "model"), _weights(alone)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), c["label"]
    assert any("dense statistics" in m for m in said)  # pruned alone: its own dense pass
    # the split is recorded, stratified, and certification items were never used to rank
    split_ids = s["split_ids"]
    assert len(split_ids["certification"]) == 18 and not set(split_ids["search"]) & set(
        split_ids["certification"]
    )
    assert s["split"]["strata"]["cardio | hpo"] == {"search": 6, "certification": 6}
    for c in s["candidates"]:
        for res in c["results"].values():
            if res.get("status") == "ok":
                assert res["n_items"] in (10, 16)
    # every candidate is listed with why it stopped; the answer is certified and registered
    assert all(c["stopped"] or c["status"] == "certified" for c in s["candidates"])
    cert = s["certified"]
    assert cert is not None and cert["certification"]["passed"]
    assert s["certification"]["order"][-1] == cert["id"] or any(
        "failed certification" in (c["stopped"] or "") for c in s["candidates"]
    )
    # both sources were tested, held together at alpha 0.05 by Holm: the one with the
    # smaller p-value at 0.025 (a 95% interval), the other at 0.05 (90%)
    by_source = {v["name"]: v for v in cert["certification"]["sources"]}
    assert set(by_source) == {"mcq", "other"}
    assert all(v["status"] == "passed" and v["independent"] for v in by_source.values())
    assert sorted(v["level"] for v in by_source.values()) == pytest.approx([0.025, 0.05])
    interval = cert["certification"]["interval"]
    assert (
        interval["confidence"] == pytest.approx(1 - 2 * by_source["mcq"]["level"])
        and interval["method"] == "mcnemar"
        and interval["n"] == 18
    )
    assert by_source["other"]["interval"]["n"] == 40
    assert [r["verdict"] for r in s["certification"]["independence"]] == ["independent"] * 2
    assert s["registered"]["version"] == 1
    reg = LocalRegistry(tmp_path / "registry")
    assert reg.versions("tiny-llama") == [1]
    meta = reg.metadata("tiny-llama", 1)
    assert meta["gate"]["passed"] and meta["config"]["search"] is not None
    assert s["rung_counts"][0] < 5  # bisection did not prune all five values
    assert s["rung_counts"][1] >= 1
    report = (
        Path(s["split"].get("run_dir", ""))
        if False
        else tmp_path / "runs" / "search-cache" / "runs" / "s1" / "report.html"
    )
    html = report.read_text()
    assert "Pareto plot" in html and "Certified" in html

    # a second run reuses the cache: same answer, no pruning or training again
    before = s["budget"]["cpu_seconds"]
    assert main(["search", str(cfg_path), "--run-id", "s2", "--in-process"]) == 0
    s2, log2 = _summary_and_log(capsys)
    assert _dense_passes(log2) == 0  # the statistics file is reused too
    assert f"cache hit: {next(cache.glob('dense-calibration-*'))}" in log2
    assert s2["certified"]["id"] == cert["id"]
    assert s2["budget"]["cpu_seconds_cached"] > 0
    assert s2["budget"]["cpu_seconds"] < before
    assert LocalRegistry(tmp_path / "registry").versions("tiny-llama") == [1, 2]


@pytest.mark.slow
def test_a_failing_candidate_is_recorded_and_the_search_goes_on(tmp_path, capsys):
    from medprune.search.space import build_space

    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path,
        model_dir,
        search={"axes": [{"kind": "width", "values": [0.2, 0.4]}], "bisect": False},
    )
    cfg = load_config(cfg_path)
    bad = build_space(cfg)[0].candidates[1]  # width 40%: its cached "pruned model" is broken
    entry = tmp_path / "runs" / "search-cache" / "candidates" / bad.id / "pruned"
    (entry / "model").mkdir(parents=True)
    (entry / "medprune_cache.json").write_text(
        json.dumps({"total_params": 1, "nonzero_params": 1, "sparsity": 0, "cpu_seconds": 0})
    )
    assert main(["search", str(cfg_path), "--run-id", "f1", "--in-process"]) == 0
    s = _summary(capsys)
    by_label = {c["label"]: c for c in s["candidates"]}
    assert by_label["width 40%"]["status"] == "failed"
    assert (
        "failed at rung 0" in by_label["width 40%"]["stopped"]
        and "Error" in by_label["width 40%"]["stopped"]
    )
    assert s["certified"]["label"] == "width 20%"


@pytest.mark.slow
def test_search_pipeline_runs_with_kfp_local(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path,
        model_dir,
        search={"axes": [{"kind": "width", "values": [0.2, 0.4]}], "bisect": False},
    )
    assert main(["search", str(cfg_path), "--run-id", "k1"]) == 0
    s = _summary(capsys)
    assert s["rung_counts"] == [
        2,
        len(s["certification"]["order"]) if False else s["rung_counts"][1],
    ]
    assert s["rung_counts"][0] == 2 and s["rung_counts"][1] >= 1
    assert s["certified"] is not None and s["registered"]["version"] == 1
    run = tmp_path / "runs" / "k1"
    assert (run / "summary.json").is_file() and (run / "report.html").is_file()
    # the runner every pipeline shares: kfp's output in run.log, no FAILED mark
    assert "search-certify-component" in (run / "run.log").read_text()
    assert not (run / "FAILED").exists()
    # the pipeline ran the candidates as loop iterations and registered in the If branch
    artifacts = next((run / "artifacts").iterdir())
    names = {p.name for p in artifacts.iterdir()}
    assert any(n.startswith("for-loop") for n in names) and "search-register-component" in names
    assert LocalRegistry(tmp_path / "registry").versions("tiny-llama") == [1]


def test_one_item_category_exits_2_before_any_pruning(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(tmp_path, model_dir)
    mcq = tmp_path / "data" / "mcq.jsonl"
    with mcq.open("a") as fh:
        fh.write(
            json.dumps(
                {
                    "id": "odd",
                    "question": "Q?\nAnswer:",
                    "options": TERMS,
                    "answer": 0,
                    "category": "rare",
                    "source": "hpo",
                }
            )
            + "\n"
        )
    assert main(["search", str(cfg_path), "--run-id", "b1"]) == 2
    err = capsys.readouterr().err
    assert "'rare | hpo'" in err and "cannot be split" in err
    assert not (tmp_path / "runs" / "search-cache").exists()


def test_too_small_certification_set_exits_2_naming_the_numbers(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path, model_dir, gate={"non_inferiority": {"margin": 0.05, "min_items": 5}}
    )
    assert main(["search", str(cfg_path), "--run-id", "b2"]) == 2
    err = capsys.readouterr().err
    assert (
        "too small for the margin" in err
        and "margin 0.05" in err
        and "the certification set has 18" in err
    )
    assert not (tmp_path / "runs" / "search-cache").exists()


def _card(path: Path, source: str, role: str) -> None:
    from medprune.data.cards import DataCard

    DataCard.for_file(
        path,
        count=len(path.read_text().splitlines()),
        role=role,
        source=source,
        generator="medprune build-data (builder v1)",
        license="test",
        attribution="test",
    ).save(path.parent)


def test_nothing_passing_everywhere_names_the_smallest_step_per_source(tmp_path, capsys):
    """The other source asks for more paired items than it has, so no candidate can pass
    on it: nothing is certified or registered, and the search names what each source alone
    would have certified."""
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path,
        model_dir,
        search={"axes": [{"kind": "width", "values": [0.2, 0.4]}]},
        gate={
            "min_accuracy": 0.0,
            "non_inferiority": {"margin": 0.6, "min_items": 5},
            "source_non_inferiority": {"other": {"margin": 0.6, "min_items": 100}},
        },
    )
    assert main(["search", str(cfg_path), "--run-id", "n1", "--in-process"]) == 0
    s, log = _summary_and_log(capsys)
    assert s["certified"] is None and s["registered"] is None
    cert = s["certification"]
    assert cert["why"].startswith("no candidate passed on every source")
    per = cert["smallest_per_source"]
    assert set(per) == {"mcq", "other"}
    # the built-in set alone certifies the most compressed candidate in the sequence
    assert per["mcq"]["smallest"] == cert["order"][-1]
    assert per["other"]["smallest"] is None
    assert f"on mcq alone the search could certify: {per['mcq']['label']}" in log
    # every candidate of the sequence was evaluated on both sources for this report
    for cid in cert["order"]:
        assert {v["name"] for v in cert["sources"][cid]} == {"mcq", "other"}


def test_the_built_in_set_alone_cannot_certify_a_search(tmp_path, capsys):
    """The built-in MCQ set and the recovery text come from the same generator: its
    evidence is not independent, so a search with no other source stops before any work."""
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(tmp_path, model_dir)
    cfg = yaml.safe_load(cfg_path.read_text())
    del cfg["evaluate"]["mcq_sources"]
    cfg_path.write_text(yaml.safe_dump(cfg))
    _card(tmp_path / "data" / "mcq.jsonl", "hpo+icd10cm", "evaluation")
    _card(tmp_path / "data" / "recovery.jsonl", "hpo+icd10cm", "recovery")
    assert main(["search", str(cfg_path), "--run-id", "b5"]) == 2
    err = capsys.readouterr().err
    assert "no certification source is independent" in err
    assert "mcq (hpo+icd10cm): NOT independent" in err and "same source 'hpo+icd10cm'" in err
    assert not (tmp_path / "runs" / "search-cache").exists()
    # validate says so too, with the verdict for the source
    assert main(["validate", str(cfg_path)]) == 0
    err = capsys.readouterr().err
    assert "warning: independence: mcq (hpo+icd10cm): NOT independent" in err
    assert "so `medprune search` refuses this config" in err


def test_a_declared_source_contradicting_its_card_or_an_empty_source_exits_2(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(tmp_path, model_dir)
    other = tmp_path / "data" / "other.jsonl"
    _card(other, "wordnet-medical", "evaluation")
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["evaluate"]["mcq_sources"][0]["source"] = "pubmedqa"
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(cfg_path), "--run-id", "b6"]) == 2
    err = capsys.readouterr().err
    assert "evaluate.mcq_sources.0.source: declares source 'pubmedqa'" in err
    assert "says 'wordnet-medical'" in err
    other.write_text("")
    (other.parent / "other.jsonl.card.json").unlink()
    cfg["evaluate"]["mcq_sources"][0].pop("source")
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(cfg_path), "--run-id", "b7"]) == 2
    err = capsys.readouterr().err
    assert "evaluate.mcq_sources.0.data" in err and "empty" in err
    assert not (tmp_path / "runs" / "search-cache").exists()


def test_leaking_recovery_text_exits_2(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(tmp_path, model_dir)
    rec = tmp_path / "data" / "recovery.jsonl"
    leaked = [
        f"Notes. Question {i} about cardio: which term fits? Answer: a term we trained on."
        for i in range(12)
    ]
    rec.write_text(rec.read_text() + "".join(json.dumps({"text": t}) + "\n" for t in leaked))
    assert main(["search", str(cfg_path), "--run-id", "b3", "--in-process"]) == 2
    assert "must not train on what certifies it" in capsys.readouterr().err


def test_search_pipeline_compiles_for_vertex(tmp_path, capsys):
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path,
        model_dir,
        pipeline={"base_image": "europe-west4-docker.pkg.dev/p/r/medprune-gpu:1"},
    )
    out = tmp_path / "search-pipeline.yaml"
    assert main(["compile", str(cfg_path), "-o", str(out)]) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["pipelineInfo"]["name"] == "medprune-search"
    text = out.read_text()
    assert (
        "parameterIterator" in text and "search-candidate-component" in text and "condition" in text
    )
    tasks = spec["root"]["dag"]["tasks"]
    assert "search-setup-component" in tasks and "search-certify-component" in tasks
    # each candidate branch gets the configured machine and the medprune image
    assert "NVIDIA_L4" in text and "medprune-gpu:1" in text
    from medprune.vertex.template import check_template_matches

    assert check_template_matches(load_config(cfg_path), out)["search.steps"] >= 2
    # Vertex needs a shared workspace in Cloud Storage
    cfg = load_config(cfg_path)
    from medprune.errors import ConfigError
    from medprune.search.checks import check_search_for_vertex

    with pytest.raises(ConfigError, match=r"search.cache_dir=None.*gs://"):
        check_search_for_vertex(cfg)


@pytest.mark.slow
def test_a_running_candidates_recovery_stops_when_the_cpu_budget_left_runs_out(tmp_path):
    from medprune.search import stage, workspace

    model_dir = save_tiny_model(tmp_path / "model")
    cfg = load_config(
        write_search_config(
            tmp_path,
            model_dir,
            search={
                "axes": [{"kind": "width", "values": [0.2]}],
                "bisect": False,
                "rungs": [{"items": 10, "tolerance": 0.9}, {"items": 16, "recover_steps": 500}],
                "budget": {"cpu_minutes": 60},
            },
        )
    )
    quiet: list[str] = []
    state, batch = stage.setup(cfg, "cap", progress=quiet.append)
    results = [stage.step(cfg, state.ws, t, progress=quiet.append) for t in batch]
    # a budget that leaves 0.33 CPU seconds once rung 0 is paid (the cap, rounded down to
    # 0.001 minutes: 0.005); what rung 0 costs varies by machine, so the budget is set from
    # what it measured
    state.budget.cpu_minutes = (sum(r["cpu_seconds"] for r in results) + 0.33) / 60
    batch = stage.advance(cfg, state, results, progress=quiet.append)
    assert [t["recover_caps"] for t in batch] == [{"1": 0.005}]
    res = stage.step(cfg, state.ws, batch[0], progress=quiet.append)
    assert res["status"] == "ok"
    rep = res["recovery"][0]
    assert rep["rung"] == 1 and rep["budget_reached"] and 0 < rep["steps"] < 500
    assert any("time budget of 0.005 minutes reached" in m for m in quiet)
    stage.advance(cfg, state, [res], progress=quiet.append)
    summary = json.loads((workspace.run_dir(cfg, "cap") / "summary.json").read_text())
    (row,) = summary["candidates"]
    (why,) = row["cut_short"]
    assert why.startswith("rung 1: recovery capped at 0.005 CPU minutes")
    assert why.endswith(f"; its time ran out after {rep['steps']} of 500 steps")
    assert summary["budget"]["cut_short"][0]["label"] == "width 20%"
    assert (
        "cut short: rung 1: recovery capped"
        in (workspace.run_dir(cfg, "cap") / "report.html").read_text()
    )


@pytest.mark.slow
def test_gs_data_and_a_gs_workspace_on_cloud_storage_fuse(
    tmp_path, capsys, fuse_fs, gcs_emulator, monkeypatch
):
    """gs:// everywhere, as on Vertex AI: the workspace and data in a bucket mounted at the
    FUSE root (here a folder that refuses directory renames, as Cloud Storage FUSE does), the
    certification file in a bucket that is not mounted (downloaded from the loopback Cloud
    Storage emulator). A resumed search remakes an entry left without its completion file."""
    import shutil

    monkeypatch.setenv("MEDPRUNE_GCS_FUSE_ROOT", str(fuse_fs.root))
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path, model_dir, search={"axes": [{"kind": "width", "values": [0.2, 0.4]}]}
    )
    mounted = fuse_fs.root / "mounted" / "data"
    shutil.copytree(tmp_path / "data", mounted)
    cert = [
        dict(json.loads(line), id=f"cert-{i}")
        for i, line in enumerate((mounted / "mcq.jsonl").read_text().splitlines()[::2])
    ]
    gcs_emulator.create_bucket("remote").blob("cert/mcq.jsonl").upload_from_string(
        "".join(json.dumps(r) + "\n" for r in cert)
    )
    (tmp_path / "data").rename(tmp_path / "moved-away")  # nothing is read from there
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["prune"]["calibration"]["data"] = "gs://mounted/data/calibration.jsonl"
    cfg["recover"]["data"] = "gs://mounted/data/recovery.jsonl"
    cfg["evaluate"]["mcq"] = "gs://mounted/data/mcq.jsonl"
    cfg["evaluate"]["mcq_sources"][0]["data"] = "gs://mounted/data/other.jsonl"
    cfg["search"]["certification"] = {
        "file": "gs://remote/cert/mcq.jsonl",
        "assumed_discordance": 0.3,
    }
    cfg["search"]["cache_dir"] = "gs://mounted/search-cache"
    cfg_path.write_text(yaml.safe_dump(cfg))

    assert main(["search", str(cfg_path), "--run-id", "g1", "--in-process"]) == 0
    s = _summary(capsys)
    work = fuse_fs.root / "mounted" / "search-cache"
    assert (work / "runs" / "g1" / "summary.json").is_file()
    assert sorted(s["split_ids"]["certification"]) == sorted(r["id"] for r in cert)
    assert len(s["split_ids"]["search"]) == 36  # all of evaluate.mcq ranks
    assert s["certified"] is not None, s["certification"]["why"]
    assert s["registered"]["version"] == 1
    assert fuse_fs.refused() == []  # no directory was renamed on the bucket
    # an interrupted write: an entry whose completion file never came is made again
    (evaluated,) = [c for c in s["candidates"] if c["label"] == "width 20%"]
    entry = Path(evaluated["results"]["0"]["eval_dir"])
    assert entry.is_relative_to(work)
    (entry / "medprune_cache.json").unlink()
    assert main(["search", str(cfg_path), "--run-id", "g2", "--in-process"]) == 0
    s2, log = _summary_and_log(capsys)
    assert f"cache hit: {entry}" not in log and (entry / "medprune_cache.json").is_file()
    assert f"cache hit: {work / 'candidates' / evaluated['id'] / 'pruned'}" in log
    assert s2["certified"]["id"] == s["certified"]["id"]
    assert fuse_fs.refused() == []


def test_a_gs_workspace_without_the_fuse_mount_exits_2_before_any_work(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MEDPRUNE_GCS_FUSE_ROOT", str(tmp_path / "no-mount"))
    model_dir = save_tiny_model(tmp_path / "model")
    cfg_path = write_search_config(
        tmp_path, model_dir, search={"cache_dir": "gs://bkt/search-cache"}
    )
    assert main(["search", str(cfg_path), "--run-id", "m1", "--in-process"]) == 2
    err = capsys.readouterr().err
    assert "search.cache_dir='gs://bkt/search-cache'" in err and "FUSE mount at" in err
