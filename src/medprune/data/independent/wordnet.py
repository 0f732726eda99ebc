"""Medical definitions from Princeton WordNet 3.0: the synsets under a few medical roots
(diseases, disorders, symptoms, injuries, drugs, medical procedures), parsed from WordNet's
own ``data.noun`` file.

WordNet is a general English lexicon written by lexicographers at Princeton, with no link to
the Human Phenotype Ontology or ICD-10-CM that the built-in set and the recovery text come
from, so its medical glosses make a certification source the recovery text never saw. The
extract that ships with medprune (``data/sources/wordnet-medical/synsets.jsonl``) was made
from Debian's ``wordnet-base`` 1:3.0-37 by :func:`extract_medical_synsets`; the license
(WordNet 3.0, permissive, with its notice kept) is beside it.

::

    synsets = extract_medical_synsets("/usr/share/wordnet/data.noun")
    synsets[0].category, synsets[0].term, synsets[0].gloss
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from medprune.errors import DataError
from medprune.io.jsonl import iter_jsonl, require_field

#: Category -> root synsets (WordNet 3.0 noun offsets) whose hyponym closure it holds.
MEDICAL_ROOTS: dict[str, tuple[str, ...]] = {
    "disease": ("14070360",),  # disease: an impairment of health
    "disorder": ("14052403",),  # disorder, upset: a disturbance of normal functioning
    "symptom": ("14299637",),  # symptom: a change in bodily function experienced by a patient
    "injury": ("00744443", "07313636", "14285662"),  # injury, harm, trauma (three senses)
    "drug": ("03740161",),  # medicine, medication: something that treats or prevents
    "procedure": ("01024392",),  # medical procedure
}
#: Subtrees left out: they are about plants and animals, not patients.
EXCLUDED_LEMMAS = frozenset({"plant_disease", "animal_disease"})
#: Glosses shorter than this say too little to pick one term from four.
MIN_GLOSS_WORDS = 5

_HYPONYM_POINTERS = ("~", "~i")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class MedicalSynset:
    """One WordNet concept: its offset (``WN:<offset>`` as a concept id), category, first
    lemma as the term, all lemmas, and the first sentence of its gloss."""

    offset: str
    category: str
    term: str
    lemmas: tuple[str, ...]
    gloss: str

    @property
    def concept_id(self) -> str:
        return f"WN:{self.offset}"


@dataclass(frozen=True)
class _Entry:
    lemmas: tuple[str, ...]
    gloss: str
    hyponyms: tuple[str, ...]


def _parse_line(path: Path, lineno: int, line: str) -> tuple[str, _Entry]:
    """One ``data.noun`` record (format: WordNet's wndb(5WN) man page)."""
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    try:
        offset = fields[0]
        n_words = int(fields[3], 16)
        lemmas = tuple(fields[4 + 2 * i] for i in range(n_words))
        p = 4 + 2 * n_words
        n_ptrs = int(fields[p])
        ptrs = [(fields[p + 1 + 4 * i], fields[p + 2 + 4 * i]) for i in range(n_ptrs)]
    except (IndexError, ValueError):
        raise DataError(
            f"{path}:{lineno}: not a WordNet data.noun record (offset, lex_filenum, ss_type, "
            "w_cnt, words, p_cnt, pointers, '| gloss')"
        ) from None
    if not sep or not re.fullmatch(r"\d{8}", offset):
        raise DataError(
            f"{path}:{lineno}: not a WordNet data.noun record (no 8-digit offset or gloss)"
        )
    hyponyms = tuple(o for sym, o in ptrs if sym in _HYPONYM_POINTERS)
    return offset, _Entry(lemmas, gloss.strip(), hyponyms)


def read_data_noun(path: str | Path) -> dict[str, _Entry]:
    """Every synset of a WordNet ``data.noun`` file, keyed by offset (license header lines,
    which start with two spaces, are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: WordNet data.noun not found (Debian: apt-get install wordnet-base)"
        )
    entries: dict[str, _Entry] = {}
    with path.open(encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("  ") or not line.strip():
                continue
            offset, entry = _parse_line(path, lineno, line)
            entries[offset] = entry
    return entries


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _term(lemma: str) -> str:
    return lemma.replace("_", " ")


def first_sentence(gloss: str) -> str:
    """The definition part of a gloss: up to the first ';' (examples follow it)."""
    return gloss.split(";")[0].strip().strip('"').strip()


def gloss_names_term(gloss: str, lemmas: Iterable[str]) -> bool:
    """True when the gloss contains one of the synset's own lemmas (the question would
    give its answer away)."""
    low = f" {' '.join(_WORD.findall(gloss.lower()))} "
    return any(f" {' '.join(_WORD.findall(_term(lemma).lower()))} " in low for lemma in lemmas)


def medical_synsets(entries: dict[str, _Entry]) -> list[MedicalSynset]:
    """The synsets under :data:`MEDICAL_ROOTS` (each in the first category that reaches it,
    in the dict's order), leaving out :data:`EXCLUDED_LEMMAS` subtrees, glosses under
    :data:`MIN_GLOSS_WORDS` words and glosses that name their own term; sorted by offset."""
    category_of: dict[str, str] = {}
    for category, roots in MEDICAL_ROOTS.items():
        missing = [r for r in roots if r not in entries]
        if missing:
            raise DataError(
                f"WordNet has no synset {missing[0]} (root of {category!r}); "
                "is this WordNet 3.0's data.noun?"
            )
        stack = list(roots)
        while stack:
            offset = stack.pop()
            if offset in category_of or offset not in entries:
                continue
            entry = entries[offset]
            if EXCLUDED_LEMMAS.intersection(entry.lemmas):
                continue
            category_of[offset] = category
            stack.extend(entry.hyponyms)
    out = []
    for offset in sorted(category_of):
        entry = entries[offset]
        gloss = first_sentence(entry.gloss)
        if len(gloss.split()) < MIN_GLOSS_WORDS or gloss_names_term(gloss, entry.lemmas):
            continue
        out.append(
            MedicalSynset(
                offset=offset,
                category=category_of[offset],
                term=_term(entry.lemmas[0]),
                lemmas=tuple(_term(lemma) for lemma in entry.lemmas),
                gloss=gloss,
            )
        )
    return out


def extract_medical_synsets(data_noun: str | Path) -> list[MedicalSynset]:
    """Parse ``data_noun`` and keep the medical synsets (see :func:`medical_synsets`)."""
    return medical_synsets(read_data_noun(data_noun))


def write_synsets(synsets: Sequence[MedicalSynset], path: str | Path) -> None:
    """One JSON object per line, sorted keys, so the same extract is the same bytes."""
    text = "".join(json.dumps(asdict(s), sort_keys=True) + "\n" for s in synsets)
    Path(path).write_text(text, encoding="utf-8")


def read_synsets(path: str | Path) -> list[MedicalSynset]:
    """The extract written by :func:`write_synsets`."""
    path = Path(path)
    out = []
    for lineno, rec in iter_jsonl(path):
        lemmas = require_field(path, lineno, rec, "lemmas", list)
        out.append(
            MedicalSynset(
                offset=require_field(path, lineno, rec, "offset", str),
                category=require_field(path, lineno, rec, "category", str),
                term=require_field(path, lineno, rec, "term", str),
                lemmas=tuple(str(x) for x in lemmas),
                gloss=require_field(path, lineno, rec, "gloss", str),
            )
        )
    if not out:
        raise DataError(f"{path}: no WordNet synsets")
    return out
