"""Reading a config: YAML or JSON into a validated :class:`RunConfig`, relative paths
resolved, ``--set`` overrides applied. Errors name the dotted field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medprune.config.run import RunConfig
from medprune.errors import ConfigError


def format_validation_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "<config>", base_dir: str | Path | None = None) -> RunConfig:
    """Validate a mapping into a RunConfig; relative local paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, origin)) from None
    if base_dir is not None:
        _resolve_paths(cfg, Path(base_dir))
    return cfg


def _resolve_local(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value:
        return value
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(cfg: RunConfig, base: Path) -> None:
    cfg.model.source = _resolve_local(cfg.model.source, base)  # type: ignore[assignment]
    cfg.prune.calibration.data = _resolve_local(cfg.prune.calibration.data, base)
    cfg.recover.data = _resolve_local(cfg.recover.data, base)
    cfg.recover.eval_data = _resolve_local(cfg.recover.eval_data, base)
    cfg.recover.checkpoint_dir = _resolve_local(cfg.recover.checkpoint_dir, base)
    cfg.evaluate.mcq = _resolve_local(cfg.evaluate.mcq, base)
    cfg.evaluate.perplexity = _resolve_local(cfg.evaluate.perplexity, base)
    cfg.evaluate.summarization = _resolve_local(cfg.evaluate.summarization, base)
    for source in cfg.evaluate.mcq_sources:
        source.data = _resolve_local(source.data, base)  # type: ignore[assignment]
    if cfg.evaluate.visit_notes is not None:
        cfg.evaluate.visit_notes.data = _resolve_local(cfg.evaluate.visit_notes.data, base)  # type: ignore[assignment]
    cfg.output_dir = _resolve_local(cfg.output_dir, base)  # type: ignore[assignment]
    cfg.registry.local.root = _resolve_local(cfg.registry.local.root, base)  # type: ignore[assignment]


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a YAML config. Relative paths in it resolve against the working
    directory, so `medprune run-local examples/local.yaml` behaves like the README says.
    ``overrides`` maps dotted keys (``prune.sparsity``) to values applied before validation."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return parse_config(data, origin=str(path), base_dir=Path.cwd())


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {p} is not a mapping")
    node[parts[-1]] = value
