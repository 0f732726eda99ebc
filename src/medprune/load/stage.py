"""The load stage: resolve ``model.source``, load it safely, save it as the pipeline's dense model."""

from __future__ import annotations

import tempfile
from pathlib import Path

from medprune.config import RunConfig
from medprune.errors import ConfigError
from medprune.load.lineage import save_with_lineage
from medprune.load.model import load_model
from medprune.load.resolve import resolve_model_source
from medprune.load.terms import terms_errors
from medprune.preflight.model import inspect_model_folder
from medprune.progress import Progress


def stage_load(
    cfg: RunConfig, out_dir: str | Path, *, source: str | None = None, progress: Progress = print
) -> dict:
    """Resolve ``model.source`` (or ``source``: the same model pinned to a version by
    :func:`medprune.load.fingerprint.resolve_inputs`), load it safely and save it as the
    pipeline's dense model."""
    with tempfile.TemporaryDirectory(prefix="medprune-load-") as work:
        src = resolve_model_source(source or cfg.model.source, work)
        # the preflight's folder checks, again here: a gs:// or vertex:// source is only
        # on this machine now (family, remote code, tensors against the config, tokenizer)
        inspect_model_folder(src, trust_remote_code=cfg.model.trust_remote_code)
        refused = terms_errors(src, cfg.model.accept_terms)
        if refused:
            raise ConfigError("; ".join(refused))
        progress(f"loading {src}")
        model, tokenizer = load_model(
            src, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code
        )
        params = sum(p.numel() for p in model.parameters())
        info = {
            "source": cfg.model.source,
            "resolved_source": source or cfg.model.source,
            "model_type": model.config.model_type,
            "architecture": type(model).__name__,
            "params": params,
            "dtype": cfg.model.dtype,
        }
        save_with_lineage(model, tokenizer, out_dir, cfg, {"source": info}, terms_from=src)
    progress(f"loaded {info['architecture']} with {params:,} parameters")
    return info
