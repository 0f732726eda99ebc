"""The search's decisions on made-up results: the split, the space, bisection, successive
halving, the certification order and bad search configs. No model is loaded."""

from __future__ import annotations

import copy
import re

import pytest

from medprune.config import parse_config
from medprune.errors import ConfigError, DataError
from medprune.search import plan as planner
from medprune.search.space import build_space, first_probe
from medprune.search.split import SplitRecord, stratified_split


def _cfg(search: dict | None = None, **gate):
    return parse_config(
        {
            "model": {"source": "/nonexistent", "name": "m"},
            "prune": {"calibration": {"data": "/nonexistent.jsonl"}},
            "evaluate": {"mcq": "/nonexistent.jsonl"},
            "gate": {"non_inferiority": {"margin": 0.1}, **gate},
            "search": search
            or {"axes": [{"kind": "width", "range": {"min": 0.1, "max": 0.5, "step": 0.05}}]},
        }
    )


# ---- split --------------------------------------------------------------------------------


def _records(counts: dict[tuple[str, str], int]) -> list[SplitRecord]:
    return [
        SplitRecord(f"{cat}-{src}-{i}", cat, src)
        for (cat, src), n in counts.items()
        for i in range(n)
    ]


def test_split_is_stratified_deterministic_and_disjoint():
    recs = _records({("cardio", "hpo"): 20, ("renal", "hpo"): 10, ("cardio", "icd"): 5})
    a = stratified_split(recs, fraction=0.4, seed=3)
    b = stratified_split(list(reversed(recs)), fraction=0.4, seed=3)
    assert a.search_ids == b.search_ids and a.certification_ids == b.certification_ids
    assert not set(a.search_ids) & set(a.certification_ids)
    assert len(a.search_ids) + len(a.certification_ids) == 35
    assert a.strata == {
        "cardio | hpo": {"search": 12, "certification": 8},
        "cardio | icd": {"search": 3, "certification": 2},
        "renal | hpo": {"search": 6, "certification": 4},
    }
    assert stratified_split(recs, fraction=0.4, seed=4).certification_ids != a.certification_ids


def test_a_category_with_one_item_cannot_be_split():
    recs = _records({("cardio", "hpo"): 10, ("rare thing", "hpo"): 1})
    with pytest.raises(DataError, match=r"cannot be split.*'rare thing \| hpo'.*rare_strata: pool"):
        stratified_split(recs, fraction=0.5)
    pooled = stratified_split(
        recs + _records({("other rare", "hpo"): 1}), fraction=0.5, rare_strata="pool"
    )
    assert pooled.pooled == ["other rare | hpo", "rare thing | hpo"]
    assert pooled.strata["hpo (categories with one item)"] == {"search": 1, "certification": 1}
    # A source with a single rare category (the built-in set's icd10cm has one): its pool of
    # one joins the pool of all sources, or else the smallest stratum of its own source.
    lone = stratified_split(recs, fraction=0.5, rare_strata="pool")
    assert lone.pooled == [
        "rare thing | hpo",
        "hpo (categories with one item)",
        "(categories with one item)",
    ]
    assert lone.strata == {"cardio | hpo": {"search": 5, "certification": 6}}
    two = stratified_split(
        recs + _records({("cardio", "icd"): 4, ("rare icd", "icd"): 1}),
        fraction=0.5,
        rare_strata="pool",
    )
    assert two.strata["(categories with one item)"] == {"search": 1, "certification": 1}
    assert len(two.search_ids) + len(two.certification_ids) == 16
    with pytest.raises(DataError, match="still hold one item"):
        stratified_split(_records({("rare thing", "hpo"): 1}), fraction=0.5, rare_strata="pool")


# ---- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"axes": []}, "search space is empty"),
        (
            {"axes": [{"kind": "width", "values": [0.2, 1.2]}]},
            r"values \[1.2\] are not a share of parameters removed in \(0, 1\)",
        ),
        (
            {"axes": [{"kind": "width", "range": {"min": 0.5, "max": 0.1, "step": 0.1}}]},
            "below min",
        ),
        (
            {
                "axes": [
                    {
                        "kind": "width",
                        "values": [0.2],
                        "range": {"min": 0.1, "max": 0.2, "step": 0.1},
                    }
                ]
            },
            "exactly one of values or range",
        ),
        ({"axes": [{"kind": "nm", "patterns": ["4:2"]}]}, "not N:M with 0 < N < M"),
        (
            {"axes": [{"kind": "unstructured", "method": "width", "values": [0.5]}]},
            "cannot make unstructured sparsity",
        ),
        (
            {"axes": [{"kind": "width", "values": [0.2]}, {"kind": "width", "values": [0.3]}]},
            "used twice",
        ),
        (
            {"axes": [{"kind": "width", "values": [0.2]}], "combos": [["width", "depth"]]},
            "unknown axis",
        ),
        (
            {
                "axes": [{"kind": "width", "values": [0.2]}, {"kind": "depth", "values": [0.2]}],
                "combos": [["width", "depth"]],
            },
            "structured axis .* then a sparsity axis",
        ),
        (
            {
                "axes": [{"kind": "width", "values": [0.2]}],
                "budget": {"cpu_minutes": 1},
                "rungs": [{"items": 10}, {"recover_minutes": 5}],
            },
            "cannot pay for one candidate",
        ),
        (
            {"axes": [{"kind": "width", "values": [0.2]}], "budget": {"candidates": 0}},
            "greater than or equal to 1",
        ),
        (
            {"axes": [{"kind": "width", "values": [0.2]}], "rungs": [{"items": 50}, {"items": 10}]},
            "must not shrink",
        ),
    ],
)
def test_bad_search_configs_name_the_value(search, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(search)


def test_search_needs_a_margin():
    with pytest.raises(ConfigError, match=re.escape("search needs gate.non_inferiority")):
        parse_config(
            {
                "model": {"source": "/x", "name": "m"},
                "evaluate": {"mcq": "/x.jsonl"},
                "search": {"axes": [{"kind": "width", "values": [0.2]}]},
            }
        )


def test_an_owl_value_the_engine_cannot_make_is_refused_before_pruning():
    cfg = _cfg({"axes": [{"kind": "unstructured", "values": [0.05, 0.5]}]})
    with pytest.raises(ConfigError, match=r"wanda owl 5%.*not a valid prune setting"):
        build_space(cfg)


# ---- space --------------------------------------------------------------------------------


def test_space_orders_chains_by_the_literature_and_combos_apply_two_steps():
    cfg = _cfg(
        {
            "axes": [
                {"kind": "depth", "values": [0.1, 0.2]},
                {"kind": "unstructured", "values": [0.3, 0.5]},
                {"kind": "width", "values": [0.1, 0.2]},
                {"kind": "nm", "patterns": ["2:4", "4:8"]},
            ],
            "combos": [["width", "unstructured"]],
        }
    )
    chains = build_space(cfg)
    assert [c.name for c in chains][:4] == ["width", "unstructured", "nm", "depth"]
    assert [c.name for c in chains][4:] == ["width=0.1+unstructured", "width=0.2+unstructured"]
    combo = chains[4].candidates[1]
    assert [s["method"] for s in combo.steps] == ["width", "wanda"] and combo.steps[1][
        "allocation"
    ] == "owl"
    pcs = combo.prune_configs(cfg)
    assert pcs[0].method == "width" and pcs[1].sparsity == 0.5 and pcs[1].allocation.kind == "owl"
    nm = chains[2].candidates
    assert [c.steps[0]["pattern"] for c in nm] == ["2:4", "4:8"] and nm[0].steps[0][
        "sparsity"
    ] == 0.5
    ids = [c.id for ch in chains for c in ch.candidates]
    assert len(set(ids)) == len(ids)
    assert build_space(cfg)[0].candidates[0].id == chains[0].candidates[0].id  # ids are stable


def test_first_probe_of_a_structured_axis_removes_at_most_a_third():
    values = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    assert first_probe(values, True, 1 / 3) == 4  # 0.3: the middle (0.3) is within a third
    assert first_probe([0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9], True, 1 / 3) == 1  # middle 0.6 > 1/3
    assert first_probe([None] * 5, False, 1 / 3) == 2


# ---- planner ------------------------------------------------------------------------------


def _state(cfg):
    chains = build_space(cfg)
    split = {"n_search": 200, "n_certification": 400, "search_ids": [], "certification_ids": []}
    return planner.initial_state(cfg, chains, workspace=None, split=split, baseline={})


def _result(task, difference, objective, rung=None, status="ok"):
    return {
        "kind": "candidate",
        "id": task["id"],
        "rung": task["rung"] if rung is None else rung,
        "status": status,
        "difference": difference,
        "discordance": 0.2,
        "n_items": 60,
        "accuracy": 0.6 + difference,
        "baseline_accuracy": 0.6,
        "objective_value": objective,
        "cpu_seconds": 10.0,
        "error": "boom" if status != "ok" else None,
    }


def _run(cfg, truth):
    """Drive the planner with results from ``truth(label, rung) -> difference``; return the
    final state and the labels run at each step."""
    state = _state(cfg)
    batch = planner.explore_batch(cfg, state)
    steps = []
    for _ in range(planner.total_steps(state)):
        real = [t for t in batch if t["kind"] != "noop"]
        steps.append([(t["label"], t["rung"]) for t in real])
        results = []
        for t in real:
            share = state.candidates[t["id"]].first_value or 0
            results.append(_result(t, truth(t["label"], t["rung"]), 1000 * (1 - share)))
        batch = planner.advance(state, cfg, results or [planner.NOOP])
    return state, steps


def test_bisection_finds_the_boundary_with_few_candidates():
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "range": {"min": 0.1, "max": 0.5, "step": 0.05}}],
            "rungs": [{"items": 60, "tolerance": 0.05}, {"items": 100, "recover_steps": 5}],
        }
    )

    def truth(label, rung):  # accuracy falls with width share; in the race up to 35%
        share = float(label.split()[1].rstrip("%")) / 100
        return -0.15 * share / 0.36 + (0.0 if rung == 0 else 0.06)

    state, steps = _run(cfg, truth)
    rung0 = [lab for step in steps for lab, r in step if r == 0]
    assert rung0[0] == "width 30%"  # the one-third prior, not the middle of [10%, 50%]
    assert len(rung0) <= 4  # a grid would prune all nine values
    chain = state.chains[0]
    labels = [state.candidates[i].label for i in chain.ids]
    assert labels[chain.lo] == "width 35%" and labels[chain.hi] == "width 40%"
    assert state.rung_counts[0] == len(rung0)
    skipped = [
        c for c in state.candidates.values() if (c.stopped or "").startswith("skipped by bisection")
    ]
    assert skipped and all(not c.results for c in skipped)
    order = planner.certification_order(state, cfg)
    assert order and state.candidates[order[-1]].label == "width 35%"


def test_successive_halving_keeps_the_most_compressed_and_the_safest():
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}],
            "bisect": False,
            "eta": 3,
            "rungs": [{"items": 60, "tolerance": 0.5}, {"items": 100}],
        }
    )
    state, steps = _run(cfg, lambda label, rung: -0.01 * float(label.split()[1].rstrip("%")) / 10)
    assert len(steps[0]) == 6  # the grid at rung 0
    rung1 = sorted(lab for lab, r in steps[1])
    assert rung1 == [
        "width 10%",
        "width 60%",
    ]  # ceil(6/3) = 2: the most compressed + the most accurate
    why = {c.label: c.stopped for c in state.candidates.values()}
    assert "successive halving" in why["width 30%"]


def test_with_room_for_one_survivor_the_safe_step_goes_on_beside_the_most_compressed():
    """examples/search.yaml on SmolLM2: three candidates at rung 1, eta 3, room for one:
    width 35% (-0.100) went on alone, failed certification, and width 25% (+0.008, the most
    accurate) was never certified. The safe step now goes on beside it."""
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2, 0.3]}],
            "bisect": False,
            "eta": 3,
            "rungs": [{"items": 60, "tolerance": 0.5}, {"items": 100}],
        }
    )
    truth = {"width 10%": -0.05, "width 20%": 0.01, "width 30%": -0.08}
    state, steps = _run(cfg, lambda label, rung: truth[label])
    assert sorted(lab for lab, r in steps[1]) == ["width 20%", "width 30%"]
    why = {c.label: c.stopped for c in state.candidates.values()}
    assert "successive halving" in why["width 10%"]


def test_the_safe_step_is_the_least_compressed_of_equally_accurate_candidates():
    """benchmarks/search.py on SmolLM2: width 25% and 32% tied at rung 0; keeping 32% as the
    'safe' step left width 35% and 32% at rung 1 and no fallback when 32% failed
    certification. On a tie the less compressed candidate is the safe one."""
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}],
            "bisect": False,
            "eta": 3,
            "rungs": [{"items": 60, "tolerance": 0.5}, {"items": 100}],
        }
    )
    tied = {"width 10%": -0.02, "width 20%": -0.01, "width 30%": -0.01}

    def truth(label, rung):
        return tied.get(label, -0.2)

    _, steps = _run(cfg, truth)
    assert sorted(lab for lab, r in steps[1]) == ["width 20%", "width 60%"]


def test_a_failed_candidate_is_recorded_and_the_search_goes_on():
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2, 0.3]}],
            "bisect": False,
            "rungs": [{"items": 10}],
        }
    )
    state = _state(cfg)
    batch = planner.explore_batch(cfg, state)
    results = [
        _result(t, 0.0, 100.0 * (3 - i), status="failed" if i == 1 else "ok")
        for i, t in enumerate(batch)
    ]
    planner.advance(state, cfg, results)
    failed = [c for c in state.candidates.values() if c.status == "failed"]
    assert len(failed) == 1 and "failed at rung 0: boom" in (failed[0].stopped or "")
    assert len(planner.certification_order(state, cfg)) == 2


def test_budget_stops_exploration_in_priority_order():
    cfg = _cfg(
        {
            "axes": [
                {"kind": "depth", "values": [0.1, 0.2]},
                {"kind": "width", "values": [0.1, 0.2]},
            ],
            "bisect": False,
            "budget": {"candidates": 3},
            "rungs": [{"items": 10}],
        }
    )
    state = _state(cfg)
    batch = planner.explore_batch(cfg, state)
    assert [t["label"] for t in batch] == ["width 10%", "width 20%", "depth 10%"]
    assert "budget: 3 candidates used" in (state.candidates[state.chains[1].ids[1]].stopped or "")


def test_too_few_certification_items_for_the_observed_discordance_stops_the_search():
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2]}],
            "bisect": False,
            "rungs": [{"items": 10}, {"items": 20}],
        }
    )
    state = _state(cfg)
    state.split["n_certification"] = 100
    batch = planner.explore_batch(cfg, state)
    results = [dict(_result(t, 0.0, 1.0), discordance=0.4) for t in batch]
    nxt = planner.advance(state, cfg, results)
    assert nxt == [planner.NOOP]
    assert "certification set too small" in (
        state.error or ""
    ) and "the certification set has 100" in (state.error or "")
    assert state.sample_size is not None
    assert state.sample_size["observed"] and state.sample_size["needed"] > 100


def test_state_is_plain_json(tmp_path):
    import json

    from medprune.search.state import SearchState

    cfg = _cfg()
    state = _state(cfg)
    batch = planner.explore_batch(cfg, state)
    planner.advance(state, cfg, [_result(t, 0.0, 1.0) for t in batch])
    data = state.to_dict()
    assert json.loads(json.dumps(data)) == copy.deepcopy(data)
    state.save(tmp_path / "state.json")
    assert json.loads((tmp_path / "state.json").read_text()) == data
    assert SearchState.load(tmp_path / "state.json") == state


def test_a_state_file_from_before_the_typed_state_still_loads():
    from medprune.search.state import SearchState

    cfg = _cfg()
    old = _state(cfg).to_dict()
    # the dict state left out what was not yet set, and a pipeline task added its batch
    for key in ("rung", "independence", "registered"):
        del old[key]
    for cand in old["candidates"].values():
        for key in ("objective_value", "recover_caps", "cap_reasons", "cut_short"):
            del cand[key]
        del cand["certification"]
    old["next_batch"] = [planner.NOOP]
    state = SearchState.from_dict(old)
    assert state.rung is None and state.independence is None
    assert state.to_dict() == _state(cfg).to_dict()


def test_the_cpu_budget_bounds_a_running_candidates_recovery_and_the_summary_says_so():
    from medprune.search.summary import search_summary

    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}],
            "bisect": False,
            "eta": 3,
            "budget": {"cpu_minutes": 2},
            "rungs": [
                {"items": 10, "tolerance": 0.5},
                {"items": 20, "recover_steps": 50, "recover_minutes": 1},
                {"recover_steps": 50, "recover_minutes": 1},
            ],
        }
    )
    state = _state(cfg)
    batch = planner.explore_batch(cfg, state)
    assert all(t["recover_caps"] == {} for t in batch)
    # rung 0: 6 x 10 CPU s = 1 of 2 minutes used; 2 survivors share the minute left
    results = [_result(t, 0.0, 100.0 * (6 - i)) for i, t in enumerate(batch)]
    batch = planner.advance(state, cfg, results)
    assert len(batch) == 2 and all(t["recover_caps"] == {"1": 0.5} for t in batch)
    rung1 = [state.candidates[t["id"]].label for t in batch]
    assert state.budget.cut_short == []  # not yet: only if the cap stops it
    # rung 1 used the rest: the cap stopped one recovery, the other finished its 50 steps;
    # the final rung gets no recovery
    # (the most compressed is also the most accurate here, so it goes on alone)
    widest = max(batch, key=lambda t: float(state.candidates[t["id"]].label.split()[1].rstrip("%")))
    results = [
        dict(
            _result(t, 0.01 if t is widest else 0.0, 100.0 * (2 - i)),
            cpu_seconds=30.0,
            recovery=[{"rung": 1, "steps": 7 if i == 0 else 50, "budget_reached": i == 0}],
        )
        for i, t in enumerate(batch)
    ]
    batch = planner.advance(state, cfg, results)
    assert len(batch) == 1 and batch[0]["recover_caps"] == {"1": 0.5, "2": 0.0}
    first, second = (state.candidates[r["id"]].to_dict() for r in results)
    (why,) = [w for w in first["cut_short"] if w.startswith("rung 1")]
    assert why.startswith("rung 1: recovery capped at 0.500 CPU minutes (rungs[1] asks 1 minutes)")
    assert "1.00 minutes left (1.00 of budget.cpu_minutes=2 used) shared by 2 candidate(s)" in why
    assert why.endswith("; its time ran out after 7 of 50 steps")
    cand = state.candidates[batch[0]["id"]].to_dict()
    assert cand["cut_short"][-1].startswith("rung 2: no recovery (rungs[2] asks 1 minutes)")
    assert "the CPU budget is spent (2.00 of budget.cpu_minutes=2 used)" in cand["cut_short"][-1]
    assert "rung 1" not in " ".join(second.get("cut_short") or [])  # finished within its cap
    summary = search_summary(state)
    rows = {c["id"]: c for c in summary["candidates"]}
    assert rows[first["id"]]["cut_short"] == first["cut_short"]
    cut = summary["budget"]["cut_short"]
    assert [(r["label"], r["rung"], r["why"]) for r in cut] == [
        (first["label"], 1, why),
        (cand["label"], 2, cand["cut_short"][-1]),
    ]
    assert first["label"] in rung1
    # without a CPU budget nothing is capped
    free = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.1, 0.2, 0.3]}],
            "bisect": False,
            "rungs": [{"items": 10, "tolerance": 0.5}, {"items": 20, "recover_steps": 5}],
        }
    )
    state = _state(free)
    batch = planner.explore_batch(free, state)
    batch = planner.advance(state, free, [_result(t, 0.0, 1.0) for t in batch])
    assert batch and all(t["recover_caps"] == {} for t in batch)
    assert state.budget.cut_short == []


def test_search_uris_are_checked_before_submit():
    from medprune.preflight.findings import PreflightReport
    from medprune.preflight.run import check_uris

    report = PreflightReport()
    cfg = _cfg(
        {
            "axes": [{"kind": "width", "values": [0.2]}],
            "certification": {"file": "s3://b/cert.jsonl"},
            "cache_dir": "gs://",
        }
    )
    check_uris(cfg, report)
    assert any(
        e.startswith("search.certification.file: unsupported scheme in 's3://b/cert.jsonl'")
        for e in report.errors
    )
    assert any(e.startswith("search.cache_dir:") for e in report.errors)
    report = PreflightReport()
    check_uris(
        _cfg(
            {
                "axes": [{"kind": "width", "values": [0.2]}],
                "certification": {"file": "gs://bkt/cert.jsonl"},
                "cache_dir": "gs://bkt/search-cache",
            }
        ),
        report,
    )
    assert not [e for e in report.errors if e.startswith("search.")]
