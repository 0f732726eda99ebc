"""Data cards: where a data file comes from, what made it, under which license, and which
concepts it is about.

A card is a small JSON file written beside its data file as ``<file>.card.json``
(``mcq.jsonl`` -> ``mcq.jsonl.card.json``). Beside the file rather than one ``cards.json``
per folder because a card must travel with its file: a user copies one file, the package
data is copied file by file next to the built files, and a per-folder index would go
stale (or describe files that are not there) as soon as one file moves alone. The card
carries the file's sha256, so a card that no longer describes its file is detected.

``concept_ids`` are namespaced (``HP:0000118``, ``ICD10CM:P72``, ``WN:14070360``,
``PMID:10808977``) and ``concept_names`` are the lower-cased, whitespace-normalised names of
the same concepts, so overlap between files can be measured across ontologies (an HPO term
and a WordNet synset share no id, but may share a name)::

    card = DataCard.for_file(path, role="evaluation", source="hpo+icd10cm", ...)
    card.save()                       # path + ".card.json"
    DataCard.load_beside(path)        # None when the file has no card
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from medprune.errors import DataError
from medprune.io.atomic import atomic_write_json

CARD_SUFFIX = ".card.json"
ROLES = ("evaluation", "recovery", "calibration", "heldout")
Role = Literal["evaluation", "recovery", "calibration", "heldout"]

#: A source name: lower-case letters, digits and ``+ - _ . :`` (``hpo+icd10cm``, ``user:notes``).
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9+_.:-]{0,79}$")
_CONCEPT_ID = re.compile(r"^[A-Za-z0-9]+:\S+$")
_SPACE = re.compile(r"\s+")


def card_path(data_file: str | Path) -> Path:
    """Where the card of ``data_file`` lives."""
    p = Path(data_file)
    return p.with_name(p.name + CARD_SUFFIX)


def normalise_name(name: str) -> str:
    """A concept name as cards store it: lower case, single spaces, no outer space."""
    return _SPACE.sub(" ", name.strip().lower())


def user_source(data_file: str | Path) -> str:
    """The source name of a file without a card and without a declared source."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", Path(data_file).name.split(".")[0].lower()).strip("-")
    return f"user:{stem or 'data'}"


def check_source_name(name: str, where: str) -> str:
    if not _SOURCE.fullmatch(name):
        raise DataError(
            f"{where}: source {name!r} must be lower-case letters, digits and + - _ . : "
            "(e.g. hpo+icd10cm, wordnet-medical, pubmedqa, user:my-notes)"
        )
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DataCard:
    """What one data file is: see the module docstring."""

    file: str  # the file's name (not a path: the card sits beside it)
    sha256: str
    count: int  # records (MCQ items, texts)
    role: Role
    source: str
    generator: str  # what made the file, with its version
    license: str
    attribution: str
    concept_ids: tuple[str, ...] = field(default_factory=tuple)
    concept_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        where = f"data card of {self.file}"
        if self.role not in ROLES:
            raise DataError(f"{where}: role {self.role!r} is not one of {list(ROLES)}")
        check_source_name(self.source, where)
        if self.count < 0:
            raise DataError(f"{where}: count must be >= 0, got {self.count}")
        bad = [c for c in self.concept_ids if not _CONCEPT_ID.fullmatch(c)]
        if bad:
            raise DataError(
                f"{where}: concept ids must be namespaced (HP:0000118, ICD10CM:P72), got {bad[:3]}"
            )
        # canonical form: sorted, unique, names normalised (a card compares equal to its reload)
        object.__setattr__(self, "concept_ids", tuple(sorted(set(self.concept_ids))))
        names = {normalise_name(n) for n in self.concept_names} - {""}
        object.__setattr__(self, "concept_names", tuple(sorted(names)))

    @classmethod
    def for_file(
        cls,
        path: str | Path,
        *,
        count: int,
        role: Role,
        source: str,
        generator: str,
        license: str,
        attribution: str,
        concept_ids: Iterable[str] = (),
        concept_names: Iterable[str] = (),
    ) -> DataCard:
        """The card of the file at ``path`` as it is now (its sha256 is computed)."""
        p = Path(path)
        return cls(
            p.name,
            _sha256(p),
            count,
            role,
            source,
            generator,
            license,
            attribution,
            tuple(concept_ids),
            tuple(concept_names),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["concept_ids"] = list(self.concept_ids)
        d["concept_names"] = list(self.concept_names)
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "data card") -> DataCard:
        names = {f for f in cls.__dataclass_fields__}
        missing = sorted(
            n for n in names if n not in data and n not in ("concept_ids", "concept_names")
        )
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise DataError(f"{where}: missing fields {missing}, unknown fields {unknown}")
        try:
            return cls(
                **{
                    **data,
                    "concept_ids": tuple(data.get("concept_ids", ())),
                    "concept_names": tuple(data.get("concept_names", ())),
                }
            )
        except TypeError as exc:
            raise DataError(f"{where}: {exc}") from None

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/<file>.card.json`` (atomically); return its path."""
        out = card_path(Path(directory) / self.file)
        atomic_write_json(out, self.to_dict())
        return out

    @classmethod
    def load(cls, path: str | Path) -> DataCard:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{p}: not a readable data card ({exc})") from None
        if not isinstance(data, dict):
            raise DataError(f"{p}: a data card is a JSON object")
        return cls.from_dict(data, str(p))

    @classmethod
    def load_beside(cls, data_file: str | Path) -> DataCard | None:
        """The card next to ``data_file``, or None when there is none. A card whose sha256
        is not the file's is an error: it describes another file."""
        cp = card_path(data_file)
        if not cp.is_file():
            return None
        card = cls.load(cp)
        actual = _sha256(Path(data_file))
        if actual != card.sha256:
            raise DataError(
                f"{cp}: the card's sha256 {card.sha256[:12]}... is not the file's ({actual[:12]}...): "
                "the card describes another version of the file; rebuild it or remove it"
            )
        return card
