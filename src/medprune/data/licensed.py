"""The third-party clinical data medprune ships as package data, with its licenses.

Unmodified copies of PubMedQA's 500 non-test expert-labelled items (MIT) and ACI-BENCH's
train and valid visit notes (CC BY 4.0) live in ``medprune/data/sources/`` and are found
through :mod:`importlib.resources`, from a checkout or an installed wheel alike::

    from medprune.data.licensed import licensed_path
    path = licensed_path("pubmedqa_dev")      # .../medprune/data/sources/pubmedqa/ori_pqal_dev.json

``medprune build-data`` copies them next to the built files under their ``build_name``
(``.cache/medprune/data/pubmedqa_dev.json``, ``aci_valid.json``, ``aci_train.json``) with
the license and attribution files beside them (:func:`write_licensed_copies`), so configs
refer to them as they refer to ``mcq.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from medprune.errors import DataError
from medprune.io.atomic import atomic_write_bytes

SOURCES_DIR = "sources"  # under the medprune.data package
REINSTALL_HINT = (
    "the file ships with medprune (src/medprune/data/sources/); reinstall medprune "
    "(`pip install --force-reinstall medprune`, or `pip install -e .` in a checkout) "
    "or restore it with `git checkout -- src/medprune/data/sources`"
)


@dataclass(frozen=True)
class LicensedFile:
    """One bundled file: where it is in the package, what build-data calls its copy."""

    key: str
    source: str  # path under medprune/data/sources/
    build_name: str  # name of the copy in the build-data folder
    license: str  # SPDX-style name; the license/attribution file is another entry
    kind: str  # "data" (records counted) or "license"


PUBMEDQA_LICENSE = "MIT"
ACI_LICENSE = "CC-BY-4.0"  # https://creativecommons.org/licenses/by/4.0/

LICENSED_FILES: dict[str, LicensedFile] = {
    f.key: f
    for f in (
        LicensedFile(
            "pubmedqa_dev",
            "pubmedqa/ori_pqal_dev.json",
            "pubmedqa_dev.json",
            PUBMEDQA_LICENSE,
            "data",
        ),
        LicensedFile(
            "pubmedqa_license",
            "pubmedqa/LICENSE",
            "pubmedqa_LICENSE.txt",
            PUBMEDQA_LICENSE,
            "license",
        ),
        LicensedFile(
            "aci_train", "aci-bench/train_full.json", "aci_train.json", ACI_LICENSE, "data"
        ),
        LicensedFile(
            "aci_valid", "aci-bench/valid_full.json", "aci_valid.json", ACI_LICENSE, "data"
        ),
        LicensedFile(
            "aci_attribution",
            "aci-bench/ATTRIBUTION.md",
            "aci_ATTRIBUTION.md",
            ACI_LICENSE,
            "license",
        ),
    )
}


def _entry(key: str) -> LicensedFile:
    try:
        return LICENSED_FILES[key]
    except KeyError:
        raise DataError(
            f"no bundled data file {key!r}; the bundled files are {sorted(LICENSED_FILES)}"
        ) from None


def licensed_path(key: str) -> Path:
    """Path of the bundled file ``key`` (see :data:`LICENSED_FILES`) in the installed package.

    Raises :class:`DataError` naming the file and how to restore it when it is missing.
    """
    entry = _entry(key)
    resource = files("medprune.data").joinpath(SOURCES_DIR, *entry.source.split("/"))
    path = Path(str(resource))
    if not path.is_file():
        raise DataError(f"{path}: bundled data file {entry.source} is missing; {REINSTALL_HINT}")
    return path


def _count_records(data: bytes, name: str) -> int:
    """Records in a release file: ACI-BENCH ``{"data": [...]}`` or PubMedQA ``{pubid: {...}}``."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise DataError(f"{name}: bundled data file is not JSON ({exc}); {REINSTALL_HINT}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        return len(obj["data"])
    if isinstance(obj, dict):
        return len(obj)
    raise DataError(f"{name}: bundled data file is not a JSON object; {REINSTALL_HINT}")


def write_licensed_copies(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Copy every bundled file into ``out_dir`` under its ``build_name``; return the record
    for the manifest (per copy: source, license, bytes, sha256 and, for data, records).

    A copy whose bytes already match is left alone; every write is atomic.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, dict[str, Any]] = {}
    for entry in LICENSED_FILES.values():
        data = licensed_path(entry.key).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        target = out_dir / entry.build_name
        if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha):
            atomic_write_bytes(target, data)
        info: dict[str, Any] = {
            "source": f"medprune/data/{SOURCES_DIR}/{entry.source}",
            "license": entry.license,
            "bytes": len(data),
            "sha256": sha,
        }
        if entry.kind == "data":
            info["count"] = _count_records(data, entry.source)
        record[entry.build_name] = info
    return record
