"""Is a certification source independent of the text the pipeline trains on?

A certificate drawn from items that share their generator, or most of their concepts, with
the recovery (or calibration) text grades the pipeline's own homework: recovery teaches the
certification set's domain back, and the certificate then says nothing about the rest of
what the model knew (issue 22: a model certified on the built-in set kept its answers and
fell to chance on clinical items from other sources). For every certification source
against every training file this module measures

- the share of the source's concept ids the training file also covers (``HP:...``,
  ``ICD10CM:...``: from the data cards),
- the share of its concept names the training file also covers (normalised lower-case
  names: comparable across ontologies),
- the share of its items that share a run of 8 words with the training text (the leakage
  rule's shingles, :func:`medprune.data.clinical.leakage.word_shingles`),

and calls the source "not independent" when it has the same source name or generator as a
training file, or when any share reaches its threshold below. Pure functions on
:class:`SourceProfile` records; reading files and cards is :mod:`medprune.gate.sources`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from medprune.data.clinical.leakage import word_shingles

#: "Most of its concepts": half or more of a certification source's concept ids (or names)
#: covered by the training text means the training text teaches the certified domain itself.
MOST_CONCEPTS_SHARED = 0.5
#: An item that shares a run of 8 words with the training text has its wording in it; when a
#: tenth of a source's items do, the text paraphrases the set (the built-in leakage check
#: refuses any single item; this threshold is for sources nobody built to be disjoint).
NGRAM_ITEMS_SHARED = 0.1


@dataclass(frozen=True)
class SourceProfile:
    """What the independence check knows about one file."""

    name: str  # the certification source name (``mcq``, a mcq_sources name) or a config field
    field: str  # the config field holding the file
    source: str  # data card / declared source (``hpo+icd10cm``, ``user:notes``)
    generator: str | None  # None: unknown (no card)
    concept_ids: frozenset[str]
    concept_names: frozenset[str]
    texts: tuple[str, ...]  # one per item / record, for 8-word overlap


@dataclass(frozen=True)
class Overlap:
    """One certification source against one training file."""

    against: str  # the training file's config field
    against_source: str
    concept_id_share: float | None  # None: either side has no concept ids
    concept_name_share: float | None
    ngram_share: float  # share of the source's items sharing an 8-word run with the text
    same_source: bool
    same_generator: bool

    def reasons(self) -> list[str]:
        why = []
        if self.same_source:
            why.append(f"same source {self.against_source!r} as {self.against}")
        if self.same_generator:
            why.append(f"same generator as {self.against}")
        if self.concept_id_share is not None and self.concept_id_share >= MOST_CONCEPTS_SHARED:
            why.append(f"{self.concept_id_share:.0%} of its concept ids are in {self.against}")
        if self.concept_name_share is not None and self.concept_name_share >= MOST_CONCEPTS_SHARED:
            why.append(f"{self.concept_name_share:.0%} of its concept names are in {self.against}")
        if self.ngram_share >= NGRAM_ITEMS_SHARED:
            why.append(
                f"{self.ngram_share:.0%} of its items share an 8-word run with {self.against}"
            )
        return why


@dataclass(frozen=True)
class Independence:
    """The verdict for one certification source against every training file."""

    name: str
    field: str
    source: str
    independent: bool
    reasons: tuple[str, ...]
    overlaps: tuple[Overlap, ...]

    @property
    def verdict(self) -> str:
        return "independent" if self.independent else "not independent"

    def message(self) -> str:
        if self.independent:
            shares = "; ".join(
                f"{o.against}: concept ids {_pct(o.concept_id_share)}, names "
                f"{_pct(o.concept_name_share)}, 8-grams {o.ngram_share:.0%}"
                for o in self.overlaps
            )
            return f"{self.name} ({self.source}): independent of the training text ({shares or 'none trained on'})"
        return f"{self.name} ({self.source}): NOT independent of the training text: " + "; ".join(
            self.reasons
        )

    def to_dict(self) -> dict:
        return dict(asdict(self), verdict=self.verdict, overlaps=[asdict(o) for o in self.overlaps])

    @classmethod
    def from_dict(cls, data: dict) -> Independence:
        return cls(
            data["name"],
            data["field"],
            data["source"],
            bool(data["independent"]),
            tuple(data["reasons"]),
            tuple(Overlap(**o) for o in data["overlaps"]),
        )


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def share_covered(part: Iterable[str], whole: Iterable[str]) -> float | None:
    """Share of ``part``'s distinct elements also in ``whole``; None when ``part`` or
    ``whole`` is empty (nothing to compare)."""
    a, b = set(part), set(whole)
    if not a or not b:
        return None
    return len(a & b) / len(a)


def shingle_index(texts: Iterable[str]) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for text in texts:
        out |= word_shingles(text)
    return out


def ngram_share(item_texts: Sequence[str], index: set[tuple[str, ...]]) -> float:
    """Share of items with at least one 8-word run in ``index`` (0 for no items)."""
    if not item_texts:
        return 0.0
    return sum(1 for t in item_texts if word_shingles(t) & index) / len(item_texts)


def compare(
    cert: SourceProfile, train: SourceProfile, index: set[tuple[str, ...]] | None = None
) -> Overlap:
    """The overlap of one certification source with one training file (``index``: the
    training file's shingles, when already computed)."""
    return Overlap(
        against=train.field,
        against_source=train.source,
        concept_id_share=share_covered(cert.concept_ids, train.concept_ids),
        concept_name_share=share_covered(cert.concept_names, train.concept_names),
        ngram_share=ngram_share(cert.texts, shingle_index(train.texts) if index is None else index),
        same_source=cert.source == train.source,
        same_generator=cert.generator is not None and cert.generator == train.generator,
    )


def check_independence(cert: SourceProfile, training: Sequence[SourceProfile]) -> Independence:
    """The verdict for ``cert`` against every training file (none: independent)."""
    overlaps = tuple(compare(cert, t) for t in training)
    reasons = tuple(r for o in overlaps for r in o.reasons())
    return Independence(cert.name, cert.field, cert.source, not reasons, reasons, overlaps)
