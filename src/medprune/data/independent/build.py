"""Write the independent multiple-choice sets from the extracts that ship with medprune.

- ``mcq_wordnet.jsonl`` (source ``wordnet-medical``): "which medical term means: <WordNet
  gloss>?", the answer and three distractors from the same category (disease, disorder,
  symptom, injury, drug, procedure) of similar length. For the demo and the examples to
  certify on: nothing medprune trains on comes from WordNet.
- ``mcq_drugs.jsonl`` (source ``drug-brands``): "<Brand> is a brand name of which
  medication?", the generic and three other generics of similar length. For the retention
  benchmark only; it never chooses a default and never certifies.

The same seed gives the same bytes. Both sources are independent of the built-in set's
HPO / ICD-10-CM entries by construction; the independence check measures it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medprune.data.cards import DataCard, normalise_name
from medprune.data.clinical.leakage import LeakIndex
from medprune.data.clinical.questions import LengthPool, mcq_item
from medprune.data.independent.drugs import BrandPair, read_pairs
from medprune.data.independent.wordnet import MedicalSynset, read_synsets
from medprune.errors import DataError
from medprune.io.atomic import atomic_write_text
from medprune.io.jsonl import iter_jsonl, require_field

WORDNET_FILE = "mcq_wordnet.jsonl"
DRUGS_FILE = "mcq_drugs.jsonl"
N_WORDNET = 300
N_DRUGS = 300
#: Bump when the items change for the same seed and extracts.
BUILDER_VERSION = 1


@dataclass(frozen=True)
class IndependentSource:
    """What a built file is: its source name, what it is for, and where it comes from."""

    file: str
    source: str
    use: str
    license: str
    attribution: str
    extract: str


SOURCES = {
    WORDNET_FILE: IndependentSource(
        file=WORDNET_FILE,
        source="wordnet-medical",
        use="certification",
        license="WordNet 3.0 license (permissive; notice kept in data/sources/wordnet-medical/LICENSE)",
        attribution="Princeton University, WordNet 3.0 (2006); Debian package wordnet-base 1:3.0-37",
        extract="wordnet-medical/synsets.jsonl",
    ),
    DRUGS_FILE: IndependentSource(
        file=DRUGS_FILE,
        source="drug-brands",
        use="retention-benchmark-only",
        license="MIT (drug-named-entity-recognition 2.0.9, Fast Data Science); DrugBank open "
        "vocabulary CC0; brand names as listed by MedlinePlus (U.S. National Library of Medicine)",
        attribution="Fast Data Science, drug-named-entity-recognition 2.0.9",
        extract="drug-brands/pairs.jsonl",
    ),
}


def sources_dir() -> Path:
    """The folder of bundled source extracts inside the installed package."""
    return Path(str(resources.files("medprune.data") / "sources"))


def _extract_path(name: str) -> Path:
    path = sources_dir() / SOURCES[name].extract
    if not path.is_file():
        raise DataError(
            f"{path}: the bundled extract for {name} is missing from the installed medprune; "
            "reinstall it (pip install -e .) from a complete checkout"
        )
    return path


def wordnet_items(
    synsets: Sequence[MedicalSynset], n: int, seed: int, source: str = "wordnet-medical"
) -> list[dict[str, Any]]:
    """Up to ``n`` definition -> term items about distinct synsets, shuffled by ``seed``."""
    by_cat: dict[str, list[MedicalSynset]] = {}
    for s in synsets:
        by_cat.setdefault(s.category, []).append(s)
    pools = {c: LengthPool((s.offset, s.term) for s in ss) for c, ss in by_cat.items()}
    lemmas_of = {s.offset: {x.lower() for x in s.lemmas} for s in synsets}
    rng = random.Random(seed)
    order = sorted(synsets, key=lambda s: s.offset)
    rng.shuffle(order)
    items: list[dict[str, Any]] = []
    for s in order:
        if len(items) >= n:
            break
        own = lemmas_of[s.offset]

        def reject(key: str, text: str, own: set[str] = own, offset: str = s.offset) -> bool:
            # A distractor that is a synonym of the answer would be a second right answer.
            return key == offset or text.lower() in own

        distractors = pools[s.category].pick(rng, s.term, reject)
        if distractors is None:
            continue
        question = f"Question: Which medical term means: {s.gloss}?\nAnswer:"
        items.append(
            mcq_item(rng, f"wn-{s.offset}", question, s.term, distractors, s.category, source)
        )
    return items


def drug_items(
    pairs: Sequence[BrandPair], n: int, seed: int, source: str = "drug-brands"
) -> list[dict[str, Any]]:
    """Up to ``n`` brand -> generic items, shuffled by ``seed``."""
    pool = LengthPool((p.generic, p.generic) for p in pairs)
    rng = random.Random(seed)
    order = sorted(pairs, key=lambda p: p.generic)
    rng.shuffle(order)
    items: list[dict[str, Any]] = []
    for p in order[:n]:

        def reject(key: str, text: str, generic: str = p.generic) -> bool:
            return key == generic

        distractors = pool.pick(rng, p.generic, reject)
        if distractors is None:
            continue
        question = f"Question: {p.brand.capitalize()} is a brand name of which medication?\nAnswer:"
        items.append(
            mcq_item(rng, f"drug-{p.brand}", question, p.generic, distractors, "drug brand", source)
        )
    return items


def _without_leaks(
    items: list[dict[str, Any]], texts: Sequence[str | Path]
) -> tuple[list[dict[str, Any]], int]:
    """``items`` less those whose question or answer appears in any of ``texts`` (JSONL
    ``{"text"}`` files), by the leakage rule of the built-in set."""
    if not texts:
        return items, 0
    index = LeakIndex(items)
    leaked: set[str] = set()
    for p in texts:
        path = Path(p)
        for lineno, rec in iter_jsonl(path):
            leaked |= index.leaked_items(require_field(path, lineno, rec, "text", str))
    return [it for it in items if it["id"] not in leaked], len(leaked)


def _concept_id(item_id: str) -> str:
    """``wn-<offset>`` -> ``WN:<offset>``; ``drug-<brand>`` -> ``BRAND:<brand>``."""
    kind, _, key = item_id.partition("-")
    return f"WN:{key}" if kind == "wn" else f"BRAND:{key}"


def _card(out_dir: Path, name: str, items: Sequence[dict[str, Any]], extract_sha: str) -> None:
    """The file's data card: its source, generator, license and the concepts it asks about
    (the asked synset or brand, named by the right answer)."""
    src = SOURCES[name]
    DataCard.for_file(
        out_dir / name,
        count=len(items),
        role="evaluation",
        source=src.source,
        generator=f"medprune build-data, independent sets v{BUILDER_VERSION} "
        f"(extract {src.extract} sha256 {extract_sha[:12]})",
        license=src.license,
        attribution=src.attribution,
        concept_ids=[_concept_id(it["id"]) for it in items],
        concept_names=[normalise_name(it["options"][it["answer"]]) for it in items],
    ).save(out_dir)


def _dumps(items: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(it, ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def build_independent_sets(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_wordnet: int = N_WORDNET,
    n_drugs: int = N_DRUGS,
    exclude_texts: Sequence[str | Path] = (),
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Write :data:`WORDNET_FILE` and :data:`DRUGS_FILE` into ``out_dir``; return, per file,
    its count, sha256, source, use and the sha256 of the extract it came from.

    Items whose question or answer appears in one of ``exclude_texts`` (the built-in
    recovery and calibration text) are left out before the first ``n`` are kept, so a
    certification item is never in the text a model recovers on.

    Raises :class:`~medprune.errors.DataError` when an extract is missing or holds too few
    entries for the requested count.
    """
    out_dir = Path(out_dir)
    made: dict[str, list[dict[str, Any]]] = {}
    extracts: dict[str, str] = {}
    dropped: dict[str, int] = {}
    for name, want in ((WORDNET_FILE, n_wordnet), (DRUGS_FILE, n_drugs)):
        path = _extract_path(name)
        extracts[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        if name == WORDNET_FILE:
            synsets = read_synsets(path)
            every = wordnet_items(synsets, len(synsets), seed)
        else:
            pairs = read_pairs(path)
            every = drug_items(pairs, len(pairs), seed)
        clean, dropped[name] = _without_leaks(every, exclude_texts)
        items = clean[:want]
        if len(items) < want:
            raise DataError(
                f"{path}: only {len(items)} {SOURCES[name].source} items can be built, {want} asked"
            )
        made[name] = items
    out_dir.mkdir(parents=True, exist_ok=True)
    info: dict[str, dict[str, Any]] = {}
    for name, items in made.items():
        text = _dumps(items)
        atomic_write_text(out_dir / name, text)
        src = SOURCES[name]
        _card(out_dir, name, items, extracts[name])
        info[name] = {
            "count": len(items),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "source": src.source,
            "use": src.use,
            "license": src.license,
            "attribution": src.attribution,
            "extract_sha256": extracts[name],
            "dropped_for_leakage": dropped[name],
            "builder_version": BUILDER_VERSION,
            "seed": seed,
        }
    progress(
        f"independent sets written to {out_dir}: "
        + ", ".join(f"{n} {i['count']} ({i['source']}, {i['use']})" for n, i in info.items())
    )
    return info
