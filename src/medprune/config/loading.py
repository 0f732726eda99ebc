"""Reading a config: YAML or JSON into a validated :class:`RunConfig`, relative paths
resolved, ``--set`` overrides applied. Errors name the dotted field."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from medprune.config.run import RunConfig
from medprune.config.validation import YamlSurprise
from medprune.errors import ConfigError

#: YAML 1.2's float syntax: PyYAML (YAML 1.1) reads ``1e-4`` (no dot) as a string.
_FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _surprise(node: yaml.ScalarNode) -> YamlSurprise | None:
    if node.style is not None:  # quoted: the user said what they meant
        return None
    text, line = node.value, node.start_mark.line + 1
    if node.tag == _INT and ":" in text:
        value = yaml.safe_load(text)
        return YamlSurprise(
            line,
            text,
            f'YAML 1.1 reads the unquoted {text} as the base-60 number {value}; quote it: "{text}"',
            fatal=True,
        )
    if node.tag == _INT and re.match(r"^[-+]?0[0-7]+$", text):
        return YamlSurprise(
            line,
            text,
            f"YAML 1.1 reads the unquoted {text} as the octal number {yaml.safe_load(text)}; write it without the leading 0, or quote it",
        )
    if node.tag == _BOOL and text.lower() in ("yes", "no", "on", "off", "y", "n"):
        return YamlSurprise(
            line,
            text,
            f"YAML 1.1 reads the unquoted {text} as the boolean {yaml.safe_load(text)}; quote it if you meant text",
        )
    if node.tag == _STR and _FLOAT_12.match(text):
        return YamlSurprise(
            line,
            text,
            f"YAML 1.1 reads the unquoted {text} as text, not a number; write it with a dot ({_with_dot(text)}) to make it a number",
        )
    if node.tag == _TIMESTAMP:
        return YamlSurprise(
            line, text, f"YAML reads the unquoted {text} as a date; quote it if you meant text"
        )
    return None


def _with_dot(text: str) -> str:
    mantissa, _, exponent = text.lower().partition("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"


def read_yaml(text: str, origin: str) -> tuple[Any, dict[str, YamlSurprise]]:
    """Parse YAML; a key given twice in one mapping is an error (PyYAML would keep the last
    silently). Returns the data and the surprising unquoted values by dotted path; a base-60
    number (``2:4`` read as 124) is an error at once."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    surprises: dict[str, YamlSurprise] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                dotted = f"{path}.{key}" if path else str(key)
                if key is not None and key != "<<":
                    if key in first:
                        raise ConfigError(
                            f"{origin}:{line}: key '{dotted}' appears twice (first on line {first[key]}); "
                            "YAML would silently keep only the last one, so remove one of them"
                        )
                    first[key] = line
                walk(value_node, dotted)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}.{i}")
        elif isinstance(node, yaml.ScalarNode):
            found = _surprise(node)
            if found:
                if found.fatal:
                    raise ConfigError(
                        f"{origin}:{found.line}: {path or '(top level)'}: {found.hint}"
                    )
                surprises[path] = found

    if root is not None:
        walk(root, "")
    return data, surprises


def parse_config(
    data: Any,
    origin: str = "<config>",
    base_dir: str | Path | None = None,
    surprises: dict[str, YamlSurprise] | None = None,
) -> RunConfig:
    """Validate a mapping into a RunConfig; relative local paths resolve against ``base_dir``.
    ``surprises`` (from :func:`read_yaml`) add a hint to the errors of the values they name."""
    cfg = RunConfig.validated(data, origin, surprises)
    if base_dir is not None:
        _resolve_paths(cfg, Path(base_dir))
    return cfg


def parse_override(pair: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from ``--set``, the value read as YAML with the same checks as a file."""
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. prune.sparsity=0.3")
    data, _ = read_yaml(value, f"--set {key}")
    return key, data


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
    if cfg.search is not None:
        cfg.search.cache_dir = _resolve_local(cfg.search.cache_dir, base)
        cfg.search.certification.file = _resolve_local(cfg.search.certification.file, base)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a YAML config. Relative paths in it resolve against the working
    directory, so `medprune run-local examples/local.yaml` behaves like the README says.
    ``overrides`` maps dotted keys (``prune.sparsity``) to values applied before validation."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    data, surprises = read_yaml(text, str(path))
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
        surprises.pop(dotted, None)
    data = expand_env(data, origin=str(path))
    return parse_config(data, origin=str(path), base_dir=Path.cwd(), surprises=surprises)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(
    data: Any, origin: str = "<config>", environ: Mapping[str, str] | None = None, _path: str = ""
) -> Any:
    """Replace ``${NAME}`` in every string value with the environment variable NAME (so a
    config can take the project's bucket or project id from ``terraform output``); an unset
    variable is an error naming the field. ``$$`` is not special; only ``${...}`` is."""
    env = os.environ if environ is None else environ
    if isinstance(data, dict):
        return {
            k: expand_env(v, origin, env, f"{_path}.{k}" if _path else str(k))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [expand_env(v, origin, env, f"{_path}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def sub(m: re.Match) -> str:
            if m.group(1) not in env or env[m.group(1)] == "":
                raise ConfigError(
                    f"{origin}: {_path or '(top level)'}: ${{{m.group(1)}}} is not set in the environment"
                )
            return env[m.group(1)]

        return _ENV_REF.sub(sub, data)
    return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {p} is not a mapping")
    node[parts[-1]] = value
