"""The bundled third-party clinical data: found as package data (also from a built wheel),
copied by build-data with its licenses, and a missing file named with what to run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from medprune.data import licensed
from medprune.data.licensed import LICENSED_FILES, licensed_path, write_licensed_copies
from medprune.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def test_every_bundled_file_is_found_with_its_records() -> None:
    pubmedqa = json.loads(licensed_path("pubmedqa_dev").read_text(encoding="utf-8"))
    labels = [r["final_decision"] for r in pubmedqa.values()]
    assert (len(pubmedqa), labels.count("yes"), labels.count("no"), labels.count("maybe")) == (
        500,
        276,
        169,
        55,
    )
    for key, n in (("aci_train", 67), ("aci_valid", 20)):
        data = json.loads(licensed_path(key).read_text(encoding="utf-8"))["data"]
        assert len(data) == n and all({"src", "tgt", "file"} <= set(d) for d in data)
    assert "MIT License" in licensed_path("pubmedqa_license").read_text(encoding="utf-8")
    attribution = licensed_path("aci_attribution").read_text(encoding="utf-8")
    assert "CC BY 4.0" in attribution and "Yim" in attribution


def test_unknown_key_lists_the_bundled_ones() -> None:
    with pytest.raises(DataError, match=r"no bundled data file 'mimic'.*'aci_train'"):
        licensed_path("mimic")


def test_missing_file_names_it_and_how_to_restore(monkeypatch) -> None:
    gone = licensed.LicensedFile("gone", "pubmedqa/ori_pqal_test.json", "x.json", "MIT", "data")
    monkeypatch.setitem(LICENSED_FILES, "gone", gone)
    with pytest.raises(DataError) as err:
        licensed_path("gone")
    msg = str(err.value)
    assert "ori_pqal_test.json" in msg and "is missing" in msg
    assert "pip install --force-reinstall medprune" in msg and "git checkout" in msg


def test_copies_match_the_bundle_and_are_not_rewritten(tmp_path) -> None:
    record = write_licensed_copies(tmp_path)
    assert set(record) == {f.build_name for f in LICENSED_FILES.values()}
    for entry in LICENSED_FILES.values():
        copy = tmp_path / entry.build_name
        assert copy.read_bytes() == licensed_path(entry.key).read_bytes()
        assert record[entry.build_name]["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert record["pubmedqa_dev.json"]["count"] == 500 and record["aci_valid.json"]["count"] == 20
    assert record["aci_train.json"]["license"] == "CC-BY-4.0"
    before = (tmp_path / "aci_train.json").stat().st_mtime_ns
    (tmp_path / "aci_valid.json").write_text("{}")  # a damaged copy is replaced
    assert write_licensed_copies(tmp_path) == record
    assert (tmp_path / "aci_train.json").stat().st_mtime_ns == before
    assert json.loads((tmp_path / "aci_valid.json").read_text())["data"]


@pytest.mark.slow
def test_the_wheel_ships_the_data_and_finds_it_installed(tmp_path) -> None:
    """Build the wheel, unpack it as pip would, and read every file from there alone."""
    import tomllib  # Python 3.11+

    # a copy of what the wheel is built from, so setuptools' build/ stays out of the checkout
    src = tmp_path / "checkout"
    for name in ("src", "components", "pipelines"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("medprune-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(site)
    for entry in LICENSED_FILES.values():
        assert f"medprune/data/sources/{entry.source}" in names
    # every module setuptools should find, the two mapped folders and the PEP 561 marker
    shipped = {
        f"medprune/{p.relative_to(ROOT / 'src' / 'medprune').as_posix()}"
        for p in (ROOT / "src" / "medprune").rglob("*.py")
    }
    for folder in ("components", "pipelines"):
        shipped |= {f"medprune/{folder}/{p.name}" for p in (ROOT / folder).glob("*.py")}
    assert shipped <= names, sorted(shipped - names)
    assert "medprune/py.typed" in names
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1])\n"
        "import medprune\n"
        "from medprune.data.licensed import LICENSED_FILES, licensed_path\n"
        "paths = {k: str(licensed_path(k)) for k in LICENSED_FILES}\n"
        "print(json.dumps({'version': medprune.__version__, 'paths': paths}))\n"
    )
    # -S: no site-packages, so the editable checkout cannot answer instead of the wheel
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    got = json.loads(out)
    # the version comes from the wheel's own metadata, which pyproject.toml's version made
    assert (
        got["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    paths = {k: Path(v) for k, v in got["paths"].items()}
    for key, path in paths.items():
        assert path.is_relative_to(site), path
        assert path.read_bytes() == licensed_path(key).read_bytes()


SMALL = {"n_mcq": 40, "n_mcq_full": 120, "n_heldout": 20, "n_calibration": 30, "n_recovery": 50}


def test_build_data_copies_them_into_the_manifest(tmp_path) -> None:
    from medprune.data.clinical.build import MANIFEST_FILE, build_clinical_data

    out = tmp_path / "data"
    manifest = build_clinical_data(out, seed=1, progress=lambda _: None, **SMALL)
    on_disk = json.loads((out / MANIFEST_FILE).read_text())
    assert on_disk["licensed"] == manifest["licensed"] == write_licensed_copies(tmp_path / "x")
    for name in ("pubmedqa_dev.json", "aci_valid.json", "aci_train.json", "aci_ATTRIBUTION.md"):
        assert (out / name).is_file()
    # a folder built before the data was bundled: the copies come back without a rebuild
    del on_disk["licensed"]
    (out / MANIFEST_FILE).write_text(json.dumps(on_disk))
    for name in manifest["licensed"]:
        (out / name).unlink()
    mcq_before = (out / "mcq.jsonl").stat().st_mtime_ns
    messages: list[str] = []
    again = build_clinical_data(out, seed=1, progress=messages.append, **SMALL)
    assert messages == [f"clinical data already built: {out}"]
    assert (out / "mcq.jsonl").stat().st_mtime_ns == mcq_before
    assert again["licensed"] == manifest["licensed"]
    assert json.loads((out / MANIFEST_FILE).read_text())["licensed"] == manifest["licensed"]
    assert (out / "pubmedqa_dev.json").read_bytes() == licensed_path("pubmedqa_dev").read_bytes()


def test_clinical_tasks_example_names_the_build_data_copies() -> None:
    """examples/clinical-tasks.yaml reads the copies build-data writes, inside the checkout."""
    from medprune.config import load_config

    cfg = load_config(ROOT / "examples" / "clinical-tasks.yaml")
    data_dir = (ROOT / ".cache" / "medprune" / "data").resolve()  # .cache may be a link
    names = {f.build_name for f in LICENSED_FILES.values()}
    pubmedqa = Path(cfg.evaluate.mcq_sources[0].data)
    notes = Path(cfg.evaluate.visit_notes.data)
    for path in (pubmedqa, notes):
        assert path.parent == data_dir and path.name in names, path
