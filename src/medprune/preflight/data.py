"""Check every data file a run reads, in full, with the readers the stages use.

``evaluate.max_items`` and friends do not shorten the check: a bad line past the items a run
evaluates still means a broken file. With the model's tokenizer at hand, fields that the
stages would cut to fit ``seq_len`` are counted and reported (how many items, by how much).
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Sequence

from medprune.config import RunConfig
from medprune.errors import DataError, MedpruneError
from medprune.evaluate.formats import MCQItem, load_mcq
from medprune.evaluate.generation import GenerationItem, load_generation
from medprune.io.fuse import on_vertex_mount
from medprune.io.jsonl import read_jsonl, read_texts, require_field
from medprune.preflight.findings import PreflightReport


def is_remote(value: str | None) -> bool:
    """A URI, or a path on Vertex AI's Cloud Storage FUSE mount: not readable from here."""
    return value is not None and ("://" in value or on_vertex_mount(value))


def _records(path: str, data_format: str) -> tuple[str, list[tuple[int, dict]]]:
    """Recovery data: every record has the fields of its format (text, or prompt + response)."""
    from medprune.recover.data import detect_format

    rows = read_jsonl(path)
    fmt = detect_format(path, rows, data_format)
    fields = ("text",) if fmt == "text" else ("prompt", "response")
    for lineno, rec in rows:
        for name in fields:
            value = require_field(path, lineno, rec, name, str)
            if not value.strip():
                raise DataError(f"{path}:{lineno}: field '{name}' is empty")
    return fmt, rows


def _spread(cuts: Sequence[int]) -> str:
    return f"up to {max(cuts):,} tokens (median {int(statistics.median(cuts)):,})"


def mcq_truncation(
    items: Sequence[MCQItem], tokenizer, seq_len: int
) -> tuple[list[str], list[int]]:
    """Errors (an option alone over ``seq_len``) and the tokens each truncated item's
    context loses, as the MCQ scorer would cut them."""
    from medprune.evaluate.mcq import encode_pair

    errors, cuts = [], []
    for item in items:
        pairs = [encode_pair(tokenizer, item.context, opt) for opt in item.options]
        ctx = pairs[0][0]
        longest = max(len(cont) for _, cont in pairs)
        if longest > seq_len:
            errors.append(
                f"item {item.id!r}: an option is {longest} tokens, over evaluate.seq_len={seq_len}"
            )
            continue
        keep = max(1, seq_len + 1 - longest)
        if len(ctx) > keep:
            cuts.append(len(ctx) - keep)
    return errors, cuts


def generation_truncation(
    items: Sequence[GenerationItem], tokenizer, seq_len: int, max_new_tokens: int
) -> list[int]:
    room = seq_len - max_new_tokens
    cuts = []
    for item in items:
        n = len(tokenizer(item.input)["input_ids"])
        if n > room:
            cuts.append(n - room)
    return cuts


def instruction_truncation(path: str, rows, tokenizer, seq_len: int) -> tuple[list[str], list[int]]:
    """As ``recover.data.encode_instructions`` cuts: prompts that leave no room are errors,
    responses past ``seq_len`` are cut."""
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    errors, cuts = [], []
    for lineno, rec in rows:
        p = len(bos) + len(tokenizer(rec["prompt"], add_special_tokens=False)["input_ids"])
        r = len(tokenizer(rec["response"], add_special_tokens=False)["input_ids"]) + len(eos)
        if p >= seq_len:
            errors.append(
                f"{path}:{lineno}: prompt is {p} tokens, no room for the response within recover.seq_len={seq_len}"
            )
        elif p + r > seq_len:
            cuts.append(p + r - seq_len)
    return errors, cuts


def _check(
    report: PreflightReport,
    field: str,
    path: str | None,
    check: Callable[[str], str | None],
    *,
    quiet_remote: bool = False,
) -> None:
    """Run one file's check; its problem becomes an error prefixed with the config field."""
    if path is None:
        return
    if is_remote(path):
        if not quiet_remote:
            report.warnings.append(
                f"{field}: {path} is remote; it is read (and checked) when the run starts"
            )
        return
    try:
        summary = check(path)
    except MedpruneError as exc:
        report.errors.append(f"{field}: {exc}")
        return
    except UnicodeDecodeError as exc:  # a reader that decodes the whole file at once
        report.errors.append(
            f"{field}: {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        )
        return
    if summary:
        report.checked.append(f"{field} {path}: {summary}")


def check_data_files(
    cfg: RunConfig, report: PreflightReport, tokenizer=None, *, evaluation_only: bool = False
) -> None:
    """Read every local data file of ``cfg`` in full; with ``tokenizer``, report truncation.
    ``evaluation_only``: only the multiple-choice and summarization files (what the evaluate
    stage measures again on its own machine); remote files are skipped without a warning."""
    ev = cfg.evaluate

    def scorable(field: str, path: str, used: list, hint: str) -> None:
        """Items the scorer cannot take are an error; items it cuts are a warning."""
        if tokenizer is None:
            return
        errors, cuts = mcq_truncation(used, tokenizer, ev.seq_len)
        if errors:
            raise DataError(
                f"{path}: {len(errors)} item(s) cannot be scored: " + "; ".join(errors[:3])
            )
        if cuts:
            report.warnings.append(
                f"{field} {path}: {len(cuts)} of {len(used)} items are longer than evaluate.seq_len="
                f"{ev.seq_len} tokens; their question loses {_spread(cuts)} from its start{hint}"
            )

    def mcq(path: str) -> str:
        items = load_mcq(path, None, fmt=ev.mcq_format, cop_base=ev.medmcqa_cop_base)
        used = items[: ev.max_items] if ev.max_items else items
        note = f"{len(items)} items, all valid" + (
            f" (the run uses the first {len(used)})" if len(used) < len(items) else ""
        )
        scorable("evaluate.mcq", path, used, " (raise evaluate.seq_len to score them whole)")
        return note

    def texts(path: str) -> str:
        return f"{len(read_texts(path))} texts, all valid"

    def generation(path: str) -> str:
        items = load_generation(path, None)
        used = items[: ev.max_generation_items] if ev.max_generation_items else items
        if tokenizer is not None:
            cuts = generation_truncation(used, tokenizer, ev.seq_len, ev.max_new_tokens)
            if cuts:
                report.warnings.append(
                    f"evaluate.summarization {path}: {len(cuts)} of {len(used)} inputs are longer than "
                    f"evaluate.seq_len - max_new_tokens = {ev.seq_len - ev.max_new_tokens} tokens; they lose "
                    f"{_spread(cuts)} from their start"
                )
        return f"{len(items)} items, all valid"

    def recovery(field: str) -> Callable[[str], str]:
        def check(path: str) -> str:
            fmt, rows = _records(path, cfg.recover.data_format)
            if tokenizer is not None and fmt == "instruction":
                errors, cuts = instruction_truncation(path, rows, tokenizer, cfg.recover.seq_len)
                if errors:
                    raise DataError(
                        f"{len(errors)} record(s) cannot be trained on: " + "; ".join(errors[:3])
                    )
                if cuts:
                    report.warnings.append(
                        f"{field} {path}: {len(cuts)} of {len(rows)} records are longer than recover.seq_len="
                        f"{cfg.recover.seq_len} tokens; their response loses {_spread(cuts)} at its end"
                    )
            return f"{len(rows)} {fmt} records, all valid"

        return check

    def mcq_source(field: str, source) -> Callable[[str], str]:
        def check(path: str) -> str:
            items = load_mcq(path, None, fmt=source.format, cop_base=source.medmcqa_cop_base)
            used = items[: source.max_items] if source.max_items else items
            scorable(field, path, used, "")
            return f"{len(items)} items, all valid"

        return check

    def visit_notes(path: str) -> str:
        from medprune.evaluate.note_formats import load_visit_notes
        from medprune.evaluate.summarization import build_note_prompts

        notes = ev.visit_notes
        assert notes is not None  # checked only when evaluate.visit_notes is set
        items = load_visit_notes(path, None, fmt=notes.format)
        used = items[: notes.max_items] if notes.max_items else items
        if tokenizer is not None:
            with warnings.catch_warnings():  # one summary line instead of one warning per dialogue
                warnings.simplefilter("ignore")
                prompts = build_note_prompts(
                    tokenizer,
                    used,
                    instruction=notes.instruction,
                    prompt_style=notes.prompt_style,
                    instruction_position=notes.instruction_position,
                    speaker_labels=notes.speaker_labels,
                    max_input_tokens=notes.max_input_tokens,
                    truncate=notes.truncate,
                    source=path,
                )
            cuts = [p.truncated_tokens for p in prompts if p.truncated_tokens]
            if cuts:
                report.warnings.append(
                    f"evaluate.visit_notes.data {path}: {len(cuts)} of {len(used)} dialogues are longer than "
                    f"evaluate.visit_notes.max_input_tokens={notes.max_input_tokens}; they lose {_spread(cuts)} "
                    "from their start"
                )
        return f"{len(items)} dialogues, all valid"

    _check(report, "evaluate.mcq", ev.mcq, mcq, quiet_remote=evaluation_only)
    for i, source in enumerate(ev.mcq_sources):
        field = f"evaluate.mcq_sources.{i}.data"
        _check(report, field, source.data, mcq_source(field, source), quiet_remote=evaluation_only)
    if evaluation_only:
        _check(report, "evaluate.summarization", ev.summarization, generation, quiet_remote=True)
        return
    if ev.visit_notes is not None:
        _check(report, "evaluate.visit_notes.data", ev.visit_notes.data, visit_notes)
    _check(report, "evaluate.perplexity", ev.perplexity, texts)
    _check(report, "evaluate.summarization", ev.summarization, generation)
    _check(report, "prune.calibration.data", cfg.prune.calibration.data, texts)
    if cfg.recover.enabled:
        _check(report, "recover.data", cfg.recover.data, recovery("recover.data"))
        _check(report, "recover.eval_data", cfg.recover.eval_data, recovery("recover.eval_data"))


def data_paths(cfg: RunConfig) -> dict[str, str | None]:
    """Every data file field of a config, by its dotted name."""
    out = {
        "evaluate.mcq": cfg.evaluate.mcq,
        "evaluate.perplexity": cfg.evaluate.perplexity,
        "evaluate.summarization": cfg.evaluate.summarization,
        "prune.calibration.data": cfg.prune.calibration.data,
    }
    for i, source in enumerate(cfg.evaluate.mcq_sources):
        out[f"evaluate.mcq_sources.{i}.data"] = source.data
    if cfg.evaluate.visit_notes is not None:
        out["evaluate.visit_notes.data"] = cfg.evaluate.visit_notes.data
    if cfg.recover.enabled:
        out["recover.data"] = cfg.recover.data
        out["recover.eval_data"] = cfg.recover.eval_data
    return out


def truncation_warnings(cfg: RunConfig, tokenizer) -> list[str]:
    """What the evaluate stage will cut to fit ``evaluate.seq_len`` (multiple-choice questions,
    summarization inputs), one line per file; the stage prints these so that a run whose
    data the preflight could not read (gs://) still says so."""
    report = PreflightReport()
    check_data_files(cfg, report, tokenizer, evaluation_only=True)
    return report.warnings
