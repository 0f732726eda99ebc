"""Split clinical items once into a search set and a certification set.

The search ranks candidates on the search set only; the certification set is looked at once,
at the end, so the certification test is not biased by the choices the search made. The
split is deterministic (a hash of seed and item id orders each stratum) and stratified: every
combination of the ``stratify_by`` fields (category, source) is split in the same proportion,
so rare categories are represented on both sides::

    split = stratified_split(records, fraction=0.4, stratify_by=["category", "source"])
    split.search_ids, split.certification_ids, split.strata
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medprune.errors import DataError

POOLED = "(categories with one item)"


@dataclass(frozen=True)
class SplitRecord:
    """What the split needs of one item."""

    id: str
    category: str
    source: str


@dataclass
class Split:
    search_ids: list[str]  # in a fixed pseudo-random order: rung slices are its prefixes
    certification_ids: list[str]
    strata: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # stratum -> {search, certification}
    fraction: float = 0.0
    seed: int = 0
    stratify_by: list[str] = field(default_factory=list)
    pooled: list[str] = field(default_factory=list)  # strata pooled because they had one item

    def to_dict(self) -> dict:
        out = asdict(self)
        out["n_search"], out["n_certification"] = len(self.search_ids), len(self.certification_ids)
        return out


def order_key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def _stratum(rec: SplitRecord, stratify_by: Sequence[str]) -> str:
    return " | ".join(getattr(rec, f) for f in stratify_by) if stratify_by else "all"


def stratified_split(
    records: Sequence[SplitRecord],
    *,
    fraction: float,
    stratify_by: Sequence[str] = ("category", "source"),
    seed: int = 0,
    rare_strata: str = "error",
    origin: str = "evaluate.mcq",
) -> Split:
    """Put ``round(fraction * n)`` items of every stratum (at least one, and at least one
    left for the search) into the certification set.

    A stratum of one item cannot be split: with ``rare_strata='error'`` that is a
    :class:`DataError` naming it; with ``'pool'`` such strata are joined per source (or into
    one stratum) and that pool is split; a pool of one joins the pool of all sources, and a
    lone item left there joins the smallest stratum of its source. Only a file whose every
    stratum has one item in total fails.
    """
    if not 0 < fraction < 1:
        raise DataError(f"search.certification.fraction must be in (0, 1), got {fraction}")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"{origin}: duplicate item ids {dup}: the split needs unique ids")
    groups: dict[str, list[SplitRecord]] = defaultdict(list)
    for rec in records:
        groups[_stratum(rec, stratify_by)].append(rec)
    pooled: list[str] = []
    singles = sorted(k for k, v in groups.items() if len(v) < 2)
    if singles and rare_strata == "error":
        shown = "; ".join(repr(s) for s in singles[:5]) + (
            f" and {len(singles) - 5} more" if len(singles) > 5 else ""
        )
        raise DataError(
            f"{origin}: {len(singles)} stratum/strata of {'/'.join(stratify_by) or 'items'} have one item and "
            f"cannot be split into search and certification sets: {shown}. Add items, stratify by fewer fields "
            "(search.certification.stratify_by), set search.certification.rare_strata: pool, or name a separate "
            "certification file (search.certification.file)"
        )
    for key in singles:
        rec = groups.pop(key)[0]
        pool = f"{rec.source} {POOLED}" if "source" in stratify_by else POOLED
        groups[pool].append(rec)
        pooled.append(key)
    _merge_lone_pools(groups, pooled)
    still = sorted(k for k, v in groups.items() if len(v) < 2)
    if still:
        raise DataError(
            f"{origin}: after pooling strata with one item, {still} still hold one item and cannot be split; "
            "add items or name a separate certification file (search.certification.file)"
        )
    search: list[SplitRecord] = []
    cert: list[SplitRecord] = []
    strata: dict[str, dict[str, int]] = {}
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: order_key(seed, r.id))
        n_cert = min(len(members) - 1, max(1, math.floor(fraction * len(members) + 0.5)))
        cert.extend(members[:n_cert])
        search.extend(members[n_cert:])
        strata[key] = {"search": len(members) - n_cert, "certification": n_cert}
    search.sort(key=lambda r: order_key(seed + 1, r.id))
    cert.sort(key=lambda r: order_key(seed + 1, r.id))
    return Split(
        [r.id for r in search],
        [r.id for r in cert],
        strata,
        fraction,
        seed,
        list(stratify_by),
        pooled,
    )


def _merge_lone_pools(groups: dict[str, list[SplitRecord]], pooled: list[str]) -> None:
    """A per-source pool that still holds one item (a source with a single rare category)
    joins the pool of all sources; if that is still one item, it joins the smallest stratum
    of its own source (else the smallest stratum), so a lone item never stops the split."""
    lone = sorted(k for k, v in groups.items() if len(v) < 2 and k.endswith(POOLED) and k != POOLED)
    for key in lone:
        groups[POOLED].extend(groups.pop(key))
        pooled.append(key)
    if POOLED in groups and len(groups[POOLED]) == 1 and len(groups) > 1:
        rec = groups.pop(POOLED)[0]
        same = [
            k for k in groups if k.split(" | ")[-1] == rec.source or k.startswith(f"{rec.source} ")
        ]
        target = min(same or list(groups), key=lambda k: (len(groups[k]), k))
        groups[target].append(rec)
        pooled.append(POOLED)


def read_split_records(
    path: str | Path, *, fmt: str = "auto", cop_base: int = 0
) -> tuple[list[SplitRecord], list[dict]]:
    """The items of an MCQ file as split records, with their raw JSON records (each given
    its id, so files written from them keep the same ids)."""
    from medprune.evaluate.formats import load_mcq
    from medprune.io.jsonl import read_jsonl

    items = load_mcq(path, fmt=fmt, cop_base=cop_base)
    rows = read_jsonl(path)
    if len(rows) != len(items):
        raise DataError(f"{path}: {len(rows)} records but {len(items)} items were read")
    records, raw = [], []
    for item, (_, rec) in zip(items, rows, strict=True):
        src = rec.get("source")
        records.append(SplitRecord(item.id, item.category, str(src) if src is not None else "-"))
        raw.append({**rec, "id": rec.get("id", item.id)})
    return records, raw


def write_items(path: str | Path, raw: Sequence[dict], ids: Sequence[str]) -> Path:
    """Write the raw records of ``ids`` (in that order) as JSONL; return the path."""
    from medprune.io.atomic import atomic_write_text

    by_id = {str(r["id"]): r for r in raw}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DataError(f"items {missing[:5]} are not in the MCQ data")
    atomic_write_text(
        path, "".join(json.dumps(by_id[i], ensure_ascii=False, sort_keys=True) + "\n" for i in ids)
    )
    return Path(path)
