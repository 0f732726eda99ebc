"""Clinical concepts in free text, for a faithfulness proxy that needs no external service.

A note is checked against the dialogue it summarises by the clinical concepts each states:

* **ontology terms**: names and exact synonyms of the Human Phenotype Ontology (HPO) terms
  the package already reads for its built-in data (``medprune.data.clinical.load_hpo``),
  matched as whole word sequences after lower-casing (``shortness of breath``,
  ``hypertension``, ``fatigue``);
* **quantities**: numbers with a clinical unit (``20 mg``, ``97.2 degrees``, ``4 pounds``);
  spoken numbers are read as digits first (``twenty milligrams`` -> ``20 mg``);
* **medication names**: words with a drug-class stem (``lisinopril``, ``metformin``,
  ``prednisone``) or words given a dose (``lasix 40 mg``); medication names found in the
  dialogue count as concepts wherever they appear.

It is a proxy: a concept stated in other words (a brand for a generic, "high blood
pressure" for "hypertension" when HPO has no such synonym) is missed, and a drug named
without a dose or a known stem is not seen. It errs towards counting fewer concepts, never
towards inventing them, and it is identical for baseline and candidate.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")

#: HPO names too generic to count as a clinical statement on their own
_GENERIC = frozenset(
    {
        "all",
        "death",
        "pain",
        "abnormality",
        "normal",
        "mild",
        "severe",
        "moderate",
        "onset",
        "frequency",
        "chronic",
        "acute",
        "recurrent",
        "progressive",
        "episodic",
        "clinical modifier",
        "mode of inheritance",
        "past medical history",
        "blood",
        "left",
        "right",
        "bilateral",
        "unilateral",
        "proximal",
        "distal",
        "generalized",
        "localized",
        "death in infancy",
        "sudden death",
        "tall",
        "short",
        "occasional",
        "frequent",
        "stable",
        "position",
        "past surgical history",
        "family history",
        "social history",
        "variable",
        "typical",
    }
)
_MIN_TERM_CHARS = 4
_MAX_TERM_WORDS = 6

_UNITS = {
    "mg": "mg",
    "milligram": "mg",
    "milligrams": "mg",
    "mgs": "mg",
    "mcg": "mcg",
    "microgram": "mcg",
    "micrograms": "mcg",
    "g": "g",
    "gram": "g",
    "grams": "g",
    "kg": "kg",
    "kilogram": "kg",
    "kilograms": "kg",
    "ml": "ml",
    "milliliter": "ml",
    "milliliters": "ml",
    "cc": "ml",
    "unit": "units",
    "units": "units",
    "iu": "units",
    "lb": "lb",
    "lbs": "lb",
    "pound": "lb",
    "pounds": "lb",
    "percent": "%",
    "%": "%",
    "mmhg": "mmhg",
    "bpm": "bpm",
    "degree": "degrees",
    "degrees": "degrees",
    "cm": "cm",
    "mm": "mm",
    "inch": "inches",
    "inches": "inches",
}
_QUANTITY = re.compile(
    r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s?("
    + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
    + r")(?![a-z])"
)

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
_SCALES = {"hundred": 100, "thousand": 1000}
_NUM = "(?:" + "|".join(sorted([*_NUMBER_WORDS, *_TENS, *_SCALES], key=len, reverse=True)) + ")"
_NUMBER_RUN = re.compile(rf"\b{_NUM}(?:[\s-]+(?:and[\s-]+)?{_NUM})*\b")

#: stems that name drug classes (INN conventions) at the end of a word
_DRUG_STEMS = (
    "pril",
    "sartan",
    "olol",
    "alol",
    "statin",
    "formin",
    "gliptin",
    "gliflozin",
    "glutide",
    "dipine",
    "prazole",
    "azole",
    "tidine",
    "cillin",
    "mycin",
    "micin",
    "cycline",
    "floxacin",
    "mab",
    "tinib",
    "triptan",
    "setron",
    "azepam",
    "zolam",
    "oxetine",
    "pramine",
    "xaban",
    "parin",
    "sone",
    "olone",
    "semide",
    "thiazide",
    "profen",
    "coxib",
    "codone",
    "morphine",
    "caine",
    "lukast",
    "terol",
    "tropium",
    "dronate",
    "thyroxine",
    "insulin",
    "aspirin",
    "metformin",
    "warfarin",
    "gabapentin",
    "pregabalin",
    "sertraline",
    "citalopram",
    "amlodipine",
    "hydralazine",
    "spironolactone",
)
#: words that precede a dose without being a medication
_NOT_DRUGS = frozenset(
    """to from you about like maybe with your have just take taking took prescribe prescribed
    increase increased decrease decreased dose doses dosage daily once twice start started
    then some okay right also give given would that this them over down those these around
    continue which each every only another extra since been what when where there their were
    will could should around about lost gained gain lose weight weighs weighed was is are
    and or the a an of on at in for by it its he she his her they we our up out one two
    three four five six seven eight nine ten approximately roughly nearly almost over under
    than less more mg milligrams units percent pounds sugar sugars pressure level levels
    reading readings be being got get gets getting put putting on off been usually
    now currently still already again plus minus high low""".split()
)
_DOSED = re.compile(
    r"\b([a-z][a-z-]{3,})\s+(\d+(?:\.\d+)?)\s?(mg|milligrams?|mcg|micrograms?|units?|ml|milliliters?)\b"
)


def spoken_numbers_to_digits(text: str) -> str:
    """``twenty five milligrams`` -> ``25 milligrams``; other text unchanged."""

    def value(match: re.Match) -> str:
        total, current = 0, 0
        for word in re.split(r"[\s-]+", match.group(0)):
            if word == "and":
                continue
            if word in _NUMBER_WORDS:
                current += _NUMBER_WORDS[word]
            elif word in _TENS:
                current += _TENS[word]
            elif word == "hundred":
                current = max(current, 1) * 100
            elif word == "thousand":
                total += max(current, 1) * 1000
                current = 0
        return str(total + current)

    return _NUMBER_RUN.sub(value, text)


def normalize(text: str) -> str:
    """Lower case, spoken numbers as digits, single spaces."""
    return " ".join(spoken_numbers_to_digits(text.lower()).split())


def quantities(text: str) -> set[str]:
    """Numbers with a clinical unit, normalised (``20 mg``, ``97.2 degrees``)."""
    out = set()
    for number, unit in _QUANTITY.findall(normalize(text)):
        num = number.rstrip("0").rstrip(".") if "." in number else number
        out.add(f"{num} {_UNITS[unit]}")
    return out


def medications(text: str) -> set[str]:
    """Words that look like medication names: a drug stem ending, or a dose right after."""
    norm = normalize(text)
    found = {
        w
        for w in re.findall(r"[a-z][a-z-]{4,}", norm)
        if w.endswith(_DRUG_STEMS) and w not in _NOT_DRUGS
    }
    found |= {m.group(1) for m in _DOSED.finditer(norm) if m.group(1) not in _NOT_DRUGS}
    return found


@dataclass(frozen=True)
class ConceptVocabulary:
    """Ontology phrases (lower case, as word tuples) to find in text."""

    phrases: frozenset[tuple[str, ...]]
    source: str  # where the phrases came from (ontology, version), for results

    @property
    def sha256(self) -> str:
        joined = "\n".join(sorted(" ".join(p) for p in self.phrases))
        return hashlib.sha256(joined.encode()).hexdigest()

    @classmethod
    def from_terms(cls, terms: Iterable[str], source: str) -> ConceptVocabulary:
        phrases = set()
        for term in terms:
            words = tuple(_WORD.findall(term.lower()))
            text = " ".join(words)
            if (
                not words
                or len(words) > _MAX_TERM_WORDS
                or len(text) < _MIN_TERM_CHARS
                or text in _GENERIC
            ):
                continue
            phrases.add(words)
        return cls(frozenset(phrases), source)

    def find(self, text: str) -> set[str]:
        """Every vocabulary phrase that occurs in ``text`` as whole words."""
        words = _WORD.findall(normalize(text))
        lengths = sorted({len(p) for p in self.phrases})
        found = set()
        for n in lengths:
            for i in range(len(words) - n + 1):
                gram = tuple(words[i : i + n])
                if gram in self.phrases:
                    found.add(" ".join(gram))
        return found


@functools.lru_cache(maxsize=2)
def hpo_vocabulary(obo_path: str | None = None) -> ConceptVocabulary:
    """HPO term names and synonyms (the ontology ``medprune build-data`` reads; needs the
    ``data`` extra: ``pip install 'medprune[data]'``)."""
    from medprune.data.clinical import load_hpo

    terms, info = load_hpo(obo_path)
    names = [t.name for t in terms.values()] + [s for t in terms.values() for s in t.synonyms]
    version = info.get("data_version") or info.get("version") or "unknown"
    return ConceptVocabulary.from_terms(names, f"HPO {version} ({info.get('sha256', '')[:12]})")


@dataclass(frozen=True)
class ItemConcepts:
    """Concepts of one generated note against its dialogue and reference."""

    note: frozenset[str]
    dialogue: frozenset[str]
    reference: frozenset[str]

    @property
    def unsupported(self) -> list[str]:
        """Stated in the note, never in the dialogue."""
        return sorted(self.note - self.dialogue)

    @property
    def omitted(self) -> list[str]:
        """In the reference note, missing from the generated note."""
        return sorted(self.reference - self.note)

    @property
    def hallucination_rate(self) -> float:
        return len(self.unsupported) / len(self.note) if self.note else 0.0

    @property
    def omission_rate(self) -> float:
        return len(self.omitted) / len(self.reference) if self.reference else 0.0


def concepts(
    text: str, vocab: ConceptVocabulary, known_medications: Iterable[str] = ()
) -> set[str]:
    """Ontology terms, quantities and medication names (tagged ``term:``, ``qty:``, ``med:``)."""
    norm_words = set(_WORD.findall(normalize(text)))
    meds = medications(text) | {m for m in known_medications if m in norm_words}
    return (
        {f"term:{t}" for t in vocab.find(text)}
        | {f"qty:{q}" for q in quantities(text)}
        | {f"med:{m}" for m in meds}
    )


def item_concepts(
    note: str, dialogue: str, reference: str, vocab: ConceptVocabulary
) -> ItemConcepts:
    """Concepts of a note, its dialogue and its reference; medication names found in the
    dialogue are looked for in both notes."""
    dialogue_meds = medications(dialogue)
    return ItemConcepts(
        note=frozenset(concepts(note, vocab, dialogue_meds)),
        dialogue=frozenset(concepts(dialogue, vocab, dialogue_meds)),
        reference=frozenset(concepts(reference, vocab, dialogue_meds)),
    )
