"""The preflight of a run: everything that can be checked before any stage starts, without
loading weights. ``medprune validate`` prints it; ``run-local`` and ``submit`` run it first
and refuse to start on any error.

    report = preflight_run(cfg)        # PreflightReport: errors, warnings, what was checked
    report.raise_for_errors()          # PreflightError listing every problem, one line each
"""

from __future__ import annotations

from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import MedpruneError
from medprune.io.fuse import gcs_uri
from medprune.io.uris import parse_gcs_uri, parse_vertex_model_uri
from medprune.preflight.data import check_data_files, data_paths, is_remote
from medprune.preflight.findings import PreflightReport
from medprune.preflight.model import inspect_model_folder


def _check_uri(
    report: PreflightReport,
    field: str,
    value: str | None,
    *,
    vertex_ok: bool = False,
    needs_object: bool = False,
) -> None:
    """The shape of a remote URI: gs://BUCKET/PATH (or vertex:// where a model may come
    from the Model Registry); any other scheme is an error."""
    if value is not None:  # /gcs/BUCKET/PATH on Vertex AI
        value = gcs_uri(value)
    if value is None or "://" not in value:
        return
    try:
        if value.startswith("gs://"):
            _, prefix = parse_gcs_uri(value)
            if needs_object and not prefix:
                report.errors.append(
                    f"{field}: {value!r} names a bucket, not a file (expected gs://BUCKET/PATH)"
                )
        elif value.startswith("vertex://") and vertex_ok:
            parse_vertex_model_uri(value)
        else:
            allowed = (
                "a local path, gs:// or vertex://"
                if vertex_ok
                else "a local path or gs://BUCKET/PATH"
            )
            report.errors.append(f"{field}: unsupported scheme in {value!r}; use {allowed}")
    except MedpruneError as exc:
        report.errors.append(f"{field}: {exc}")


def check_uris(cfg: RunConfig, report: PreflightReport) -> None:
    _check_uri(report, "model.source", cfg.model.source, vertex_ok=True)
    for field, value in data_paths(cfg).items():
        _check_uri(report, field, value, needs_object=True)
    _check_uri(report, "recover.checkpoint_dir", cfg.recover.checkpoint_dir)
    _check_uri(report, "output_dir", cfg.output_dir)
    if cfg.search is not None:  # read and written through Cloud Storage FUSE on Vertex AI
        _check_uri(
            report,
            "search.certification.file",
            cfg.search.certification.file,
            needs_object=True,
        )
        _check_uri(report, "search.cache_dir", cfg.search.cache_dir)


def _check_writable(report: PreflightReport, field: str, path: str) -> None:
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    import os

    if not probe.is_dir():
        report.errors.append(f"{field}: {path}: {probe} is not a directory")
    elif not os.access(probe, os.W_OK | os.X_OK):
        report.errors.append(f"{field}: {path}: {probe} is not writable")


def check_prune_settings_on(model, cfg: RunConfig, report: PreflightReport) -> None:
    """The pruning engine's own checks of ``prune.*`` against the model (layer indices, head
    counts, N:M against in_features, what exclude leaves), on the meta-device model: the
    settings fail here, not a minute into the prune stage."""
    from medprune.prune.engine import check_prune_settings
    from medprune.prune.methods import METHODS
    from medprune.prune.width import plan_width

    method = METHODS.get(cfg.prune.method)
    if method is None:
        return  # the config check names unknown methods
    try:
        check_prune_settings(model, cfg.prune, method)
        if cfg.prune.method == "width":
            plan_width(model, cfg.prune)  # explicit sizes and head counts must fit the model
    except MedpruneError as exc:
        report.errors.append(f"prune: {exc}")
    else:
        report.checked.append(f"prune: {cfg.prune.method} settings fit the model")


def check_terms_accepted(model_dir: str, cfg: RunConfig, report: PreflightReport) -> None:
    """A model released under its own terms (its folder carries them) is only used when the
    run accepts them in ``model.accept_terms``."""
    from medprune.load.terms import terms_errors

    report.errors.extend(terms_errors(model_dir, cfg.model.accept_terms))


def check_recover_fits_model(config, cfg: RunConfig, report: PreflightReport) -> None:
    """Recovery sequences (and the teacher's text, written at the same length) must fit the
    model's context window; a teacher openings file must be readable."""
    rc = cfg.recover
    if not rc.enabled or rc.steps == 0:
        return
    context = getattr(config, "max_position_embeddings", None)
    if isinstance(context, int) and rc.seq_len > context:
        what = " (and every recover.teacher_data sequence)" if rc.teacher_data else ""
        report.errors.append(
            f"recover.seq_len: {rc.seq_len} tokens per sequence{what} exceeds the model's "
            f"context of {context} tokens (max_position_embeddings)"
        )
    td = rc.teacher_data
    if td is not None and td.openings and not is_remote(td.openings):
        from medprune.recover.teacher_data import read_openings

        try:
            n = len(read_openings(td.openings))
        except MedpruneError as exc:
            report.errors.append(f"recover.teacher_data.openings: {exc}")
        else:
            report.checked.append(f"recover.teacher_data.openings: {n} openings")


def preflight_run(cfg: RunConfig, *, local_run: bool = True) -> PreflightReport:
    """Check ``cfg``'s model, data, URIs and output places. ``local_run`` is False for a run
    submitted to Vertex AI, where output_dir and the local registry are not written here."""
    report = PreflightReport()
    check_uris(cfg, report)
    if local_run and cfg.registry.target == "local":
        from medprune.register.local import LocalRegistry

        try:
            LocalRegistry(cfg.registry.local.root).check_writable()
        except MedpruneError as exc:
            report.errors.append(f"registry.local.root: {exc}")
    if local_run and not is_remote(cfg.output_dir):
        _check_writable(report, "output_dir", cfg.output_dir)
    tokenizer = None
    source = cfg.model.source
    if is_remote(source):
        report.warnings.append(
            f"model.source: {source} is remote; its files are checked (tensors, tokenizer) when the load stage downloads it"
        )
    else:
        try:
            folder = inspect_model_folder(source, trust_remote_code=cfg.model.trust_remote_code)
        except MedpruneError as exc:
            report.errors.append(f"model.source: {exc}")
        else:
            tokenizer = folder.tokenizer
            report.checked.append(folder.describe())
            check_terms_accepted(source, cfg, report)
            check_prune_settings_on(folder.meta_model, cfg, report)
            check_recover_fits_model(folder.meta_model.config, cfg, report)
    check_data_files(cfg, report, tokenizer)
    if report.ok:  # the files read: how they relate to each other
        from medprune.preflight.independence import check_independence

        check_independence(cfg, report)
    return report
