"""Every check of a search that can fail before any pruning (:func:`preflight_search`), the
split of the items into search and certification sets (:func:`split_items`), and what a search
needs to run on Vertex AI (:func:`check_search_for_vertex`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from medprune.config import RunConfig
from medprune.data.clinical import check_leakage
from medprune.errors import ConfigError, DataError, MedpruneError, PruneError
from medprune.gate.sources import check_declared_sources, independence_report
from medprune.gate.stats import noninferiority_sample_size
from medprune.io.atomic import atomic_write_text
from medprune.io.fuse import VERTEX_FUSE_PREFIX
from medprune.search.remote import check_workspace_reachable, localize_data
from medprune.search.space import build_space, step_config
from medprune.search.split import Split, order_key, read_split_records, stratified_split


class SearchError(MedpruneError):
    """The search cannot run as configured (checked before any pruning)."""


def split_items(cfg: RunConfig):
    """Search and certification items: the split of evaluate.mcq, or all of it against a
    separate certification file."""
    sc = cfg.search
    assert sc is not None
    if not cfg.evaluate.mcq:
        raise ConfigError(
            "search needs evaluate.mcq: candidates are ranked and certified on multiple-choice items"
        )
    ev = cfg.evaluate
    assert ev.mcq is not None
    records, raw = read_split_records(ev.mcq, fmt=ev.mcq_format, cop_base=ev.medmcqa_cop_base)
    if sc.certification.file:
        cert_records, cert_raw = read_split_records(
            sc.certification.file, fmt=ev.mcq_format, cop_base=ev.medmcqa_cop_base
        )
        overlap = sorted({r.id for r in records} & {r.id for r in cert_records})
        if overlap:
            raise DataError(
                f"search.certification.file {sc.certification.file} shares item ids with evaluate.mcq "
                f"{ev.mcq}: {overlap[:5]}; certification items must be ones the search never sees"
            )
        search_ids = sorted(
            (r.id for r in records), key=lambda i: order_key(sc.certification.seed + 1, i)
        )
        split = Split(
            search_ids, [r.id for r in cert_records], {}, 0.0, sc.certification.seed, [], []
        )
        return split, raw, cert_raw
    split = stratified_split(
        records,
        fraction=sc.certification.fraction,
        stratify_by=sc.certification.stratify_by,
        seed=sc.certification.seed,
        rare_strata=sc.certification.rare_strata,
        origin=str(ev.mcq),
    )
    return split, raw, raw


def check_candidates_fit_model(cfg: RunConfig, chains) -> None:
    """Each candidate's prune settings against the model's shapes (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from medprune.prune.engine import check_prune_settings
    from medprune.prune.methods import get_method

    if "://" in cfg.model.source:
        return  # remote models are checked when the setup task has them
    mc = AutoConfig.from_pretrained(cfg.model.source, trust_remote_code=cfg.model.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(mc)
    for chain in chains:
        for cand in chain.candidates:
            pc = step_config(
                cfg, cand.steps[0]
            )  # later steps act on the smaller model: checked when run
            try:
                check_prune_settings(model, pc, get_method(pc.method))
            except PruneError as exc:
                raise ConfigError(
                    f"search.axes: candidate {cand.label!r} cannot be made from this model: {exc}"
                ) from None


def check_search_for_vertex(cfg: RunConfig) -> None:
    """On Vertex AI the search's tasks share their work through Cloud Storage."""
    sc = cfg.search
    if sc is None:
        raise ConfigError("the config has no search section")
    if not (sc.cache_dir or "").startswith(("gs://", VERTEX_FUSE_PREFIX)):
        raise ConfigError(
            f"search.cache_dir={sc.cache_dir!r}: on Vertex AI the search's tasks share candidates, state and "
            "report through Cloud Storage; set it to gs://BUCKET/PATH"
        )


def preflight_search(cfg: RunConfig) -> dict:
    """Every check that can fail before any pruning: the space, each value against the
    model, the split, rung sizes, recovery text against certification items, and whether
    the certification set can detect the margin at all. Returns what was found."""
    from medprune.preflight import preflight_run  # the model checks import torch

    sc = cfg.search
    if sc is None:
        raise ConfigError(
            "this config has no search section; `medprune search` needs one (see examples/search.yaml)"
        )
    check_workspace_reachable(cfg)
    cfg = localize_data(cfg)  # gs:// data: through the FUSE mount, else downloaded
    preflight_run(cfg).raise_for_errors()
    chains = build_space(cfg)
    check_candidates_fit_model(cfg, chains)
    split, _, _ = split_items(cfg)
    n_search, n_cert = len(split.search_ids), len(split.certification_ids)
    if n_cert == 0:
        field = (
            "search.certification.file"
            if sc.certification.file
            else "search.certification.fraction"
        )
        raise SearchError(
            f"{field}: no items are left to certify on after the split of {cfg.evaluate.mcq}; "
            "give more items or a larger fraction"
        )
    for i, rung in enumerate(sc.rungs):
        if rung.items is not None and rung.items > n_search:
            raise ConfigError(
                f"search.rungs[{i}].items={rung.items} but the search set has {n_search} items; "
                f"allowed: <= {n_search} (or null for all of them)"
            )
    ni = cfg.gate.non_inferiority
    assert ni is not None  # RunConfig requires gate.non_inferiority with a search section
    size = noninferiority_sample_size(
        ni.margin,
        sc.alpha,
        sc.power,
        sc.certification.assumed_discordance,
        available=n_cert,
    )
    if not size.enough:
        raise SearchError(
            f"the certification set is too small for the margin: {size.message()}. Lower search.power, raise "
            "gate.non_inferiority.margin or search.certification.fraction, or give more items"
        )
    if n_cert < cfg.gate.non_inferiority.min_items:  # type: ignore[union-attr]
        raise SearchError(
            f"the certification set has {n_cert} items, fewer than gate.non_inferiority.min_items="
            f"{cfg.gate.non_inferiority.min_items}"  # type: ignore[union-attr]
        )
    if (
        cfg.recover.enabled
        and cfg.recover.data
        and "://" not in cfg.recover.data
        and any(r.recover_steps for r in sc.rungs)
    ):
        _, _, cert_raw = split_items(cfg)
        by_id = {str(r["id"]): r for r in cert_raw}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "certification.jsonl"
            atomic_write_text(
                path, "".join(json.dumps(by_id[i]) + "\n" for i in split.certification_ids)
            )
            try:
                leaked = check_leakage(path, cfg.recover.data)
            except MedpruneError:
                leaked = []  # not our item format: the leakage check reads medprune-format items only
        if leaked:
            raise SearchError(
                f"recover.data {cfg.recover.data} contains text from {len(leaked)} certification item(s) "
                f"({leaked[:5]}): recovery must not train on what certifies it; remove those texts"
            )
    independence = check_certification_independence(cfg)
    return {"chains": chains, "split": split, "sample_size": size, "independence": independence}


def check_certification_independence(cfg: RunConfig) -> list:
    """Every certification source against the recovery and calibration text (data cards,
    concept and 8-word overlap); a search whose sources are all dependent cannot certify
    anything, so it stops here, before any model work. Returns the verdicts."""
    errors = check_declared_sources(cfg)
    if errors:
        raise DataError("; ".join(errors))
    report = independence_report(cfg)
    if report and not any(r.independent for r in report):
        raise SearchError(
            "no certification source is independent of the recovery / calibration text, so no "
            "certificate would say anything about what the model knew outside it: "
            + "; ".join(r.message() for r in report)
            + ". Add an independent evaluate.mcq_sources entry (e.g. the wordnet-medical set "
            "build-data writes) or recover on other text"
        )
    return report
