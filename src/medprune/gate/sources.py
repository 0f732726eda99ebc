"""The gate's clinical sources as the config names them: which files certify (the built-in
MCQ set, every ``evaluate.mcq_sources`` entry, visit notes), which files the pipeline trains
on (recovery and calibration text), what source each declares or its data card says, and
whether each certification source is independent of the training text
(:mod:`medprune.data.independence`).

    report = independence_report(cfg)          # one Independence per certification source
    gate = family_gate(cfg)                    # every MCQ source tested, inheriting gate.non_inferiority
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medprune.config import GateConfig, RunConfig
from medprune.data.cards import DataCard, card_path, user_source
from medprune.data.independence import Independence, SourceProfile, check_independence
from medprune.errors import DataError
from medprune.gate.decision import BUILTIN_SOURCE, NOTES_SOURCE
from medprune.io.fuse import on_vertex_mount


@dataclass(frozen=True)
class DataFile:
    """One configured data file and where its source name comes from."""

    name: str  # certification source name (mcq, a mcq_sources name, visit_notes) or "recovery" / "calibration"
    data_field: str
    source_field: str
    path: str
    declared: str | None
    kind: str  # "mcq", "notes" or "text"
    fmt: str = "auto"
    cop_base: int = 0

    @property
    def local(self) -> bool:
        return "://" not in self.path and not on_vertex_mount(self.path)


def certification_files(cfg: RunConfig) -> list[DataFile]:
    """Every clinical source a candidate is certified on, in the gate's order."""
    ev = cfg.evaluate
    out: list[DataFile] = []
    cert_file = cfg.search.certification.file if cfg.search is not None else None
    if cert_file:
        out.append(
            DataFile(
                BUILTIN_SOURCE, "search.certification.file", "evaluate.mcq_source", cert_file,
                ev.mcq_source, "mcq", ev.mcq_format, ev.medmcqa_cop_base,
            )
        )  # fmt: skip
    elif ev.mcq:
        out.append(
            DataFile(
                BUILTIN_SOURCE, "evaluate.mcq", "evaluate.mcq_source", ev.mcq, ev.mcq_source,
                "mcq", ev.mcq_format, ev.medmcqa_cop_base,
            )
        )  # fmt: skip
    for i, s in enumerate(ev.mcq_sources):
        out.append(
            DataFile(
                s.name, f"evaluate.mcq_sources.{i}.data", f"evaluate.mcq_sources.{i}.source",
                s.data, s.source, "mcq", s.format, s.medmcqa_cop_base,
            )
        )  # fmt: skip
    if ev.visit_notes is not None:
        out.append(
            DataFile(
                NOTES_SOURCE, "evaluate.visit_notes.data", "evaluate.visit_notes.source",
                ev.visit_notes.data, ev.visit_notes.source, "notes", ev.visit_notes.format,
            )
        )  # fmt: skip
    return out


def training_files(cfg: RunConfig) -> list[DataFile]:
    """The text the pipeline trains or calibrates on: recovery (when enabled) and calibration."""
    out: list[DataFile] = []
    if cfg.recover.enabled and cfg.recover.data:
        out.append(
            DataFile(
                "recovery", "recover.data", "recover.data_source", cfg.recover.data,
                cfg.recover.data_source, "text",
            )
        )  # fmt: skip
    cal = cfg.prune.calibration
    if cal.data:
        out.append(
            DataFile(
                "calibration", "prune.calibration.data", "prune.calibration.data_source",
                cal.data, cal.data_source, "text",
            )
        )  # fmt: skip
    return out


def resolve_source(f: DataFile) -> tuple[str, DataCard | None]:
    """The file's source name and its data card (None: no card): the declared name, the
    card's, or ``user:<file stem>``. A declared name the card contradicts is an error
    naming the field."""
    card = DataCard.load_beside(f.path) if f.local and Path(f.path).is_file() else None
    if f.declared and card is not None and f.declared != card.source:
        raise DataError(
            f"{f.source_field}: declares source {f.declared!r} for {f.path}, but its data card "
            f"{card_path(f.path)} says {card.source!r}; fix the declaration or leave it out"
        )
    return f.declared or (card.source if card else user_source(f.path)), card


def check_declared_sources(cfg: RunConfig) -> list[str]:
    """One error line per data file whose declared source contradicts its card (or whose
    card is broken)."""
    errors = []
    for f in certification_files(cfg) + training_files(cfg):
        try:
            resolve_source(f)
        except DataError as exc:
            errors.append(
                str(exc) if str(exc).startswith(f.source_field) else f"{f.source_field}: {exc}"
            )
    return errors


def _item_texts(f: DataFile) -> tuple[str, ...]:
    if f.kind == "mcq":
        from medprune.evaluate.formats import load_mcq

        items = load_mcq(f.path, fmt=f.fmt, cop_base=f.cop_base)
        return tuple(f"{it.context} {it.options[it.answer]}" for it in items)
    if f.kind == "notes":
        from medprune.evaluate.note_formats import load_visit_notes

        notes = load_visit_notes(f.path, fmt=f.fmt)  # type: ignore[arg-type]
        return tuple(f"{n.dialogue}\n{n.reference}" for n in notes)
    from medprune.io.jsonl import read_jsonl

    texts = []
    for _, rec in read_jsonl(f.path):
        if "text" in rec:
            texts.append(str(rec["text"]))
        else:
            texts.append(f"{rec.get('prompt', '')}\n{rec.get('response', '')}")
    return tuple(texts)


def profile(f: DataFile) -> SourceProfile:
    """What the independence check needs from one local file: its source, generator,
    concepts (from its card) and texts."""
    source, card = resolve_source(f)
    return SourceProfile(
        name=f.name,
        field=f.data_field,
        source=source,
        generator=None if card is None else card.generator,
        concept_ids=frozenset(card.concept_ids if card else ()),
        concept_names=frozenset(card.concept_names if card else ()),
        texts=_item_texts(f),
    )


def independence_report(cfg: RunConfig) -> list[Independence]:
    """The verdict for every local certification source against the local training files
    (remote files are not read here: they have no verdict)."""
    training = [profile(f) for f in training_files(cfg) if f.local]
    return [check_independence(profile(f), training) for f in certification_files(cfg) if f.local]


def independence_map(report: list[Independence]) -> dict[str, bool]:
    return {r.name: r.independent for r in report}


def family_gate(cfg: RunConfig) -> GateConfig:
    """The gate with every multiple-choice source in its non-inferiority family: with
    ``gate.non_inferiority`` set, each ``evaluate.mcq_sources`` entry without its own
    ``gate.source_non_inferiority`` entry inherits it (margin, method, metric, min_items).
    Visit notes join the family through ``gate.source_non_inferiority.visit_notes`` only:
    a per-note score needs its own margin and metric."""
    ni = cfg.gate.non_inferiority
    if ni is None:
        return cfg.gate
    fam = dict(cfg.gate.source_non_inferiority)
    for s in cfg.evaluate.mcq_sources:
        fam.setdefault(s.name, ni)
    return cfg.gate.model_copy(update={"source_non_inferiority": fam})
