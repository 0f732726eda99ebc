"""The one lock (constraints.txt): it pins every dependency pyproject.toml names for what
`make setup` installs, and every install (Makefile, CI, both images) takes it."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
#: Extras that `make setup` does not install, so the lock does not pin them: the comparison
#: with llm-compressor and the lm-eval parity check each go in a venv of their own.
UNLOCKED_EXTRAS = {"bench", "parity"}


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, line in enumerate(LOCK.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;+]+)", line)
        assert m, f"constraints.txt line {n}: {line!r} is not an exact pin NAME==VERSION"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt line {n}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def _makefile_extras() -> set[str]:
    m = re.search(r"^EXTRAS := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert m, "Makefile: no EXTRAS := line"
    return set(m.group(1).split(","))


def test_lock_pins_every_dependency_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) - _makefile_extras() <= UNLOCKED_EXTRAS | {"judge"}
    installed = _makefile_extras() | {"judge"}  # judge's packages are all in test
    wanted = list(project["dependencies"])
    for extra in installed:
        wanted += extras[extra]
    pins = _lock()
    for spec in wanted:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} ({spec}) is not in constraints.txt: run `make lock`"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {spec}: "
            "run `make lock`"
        )


def test_torch_is_one_version_everywhere() -> None:
    torch = _lock()["torch"]
    makefile = (ROOT / "Makefile").read_text()
    assert f"TORCH_VERSION := {torch}\n" in makefile
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={torch}\n" in dockerfile


def test_every_install_takes_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("define install_venv", 1)[1].split("endef", 1)[0]
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert len(installs) >= 4 and all("$(2)" in line for line in installs)
    assert "$(call install_venv,$(VENV),-c $(LOCK))" in makefile
    assert re.search(r"^LOCK := constraints\.txt$", makefile, re.MULTILINE)
    # CI installs through `make setup` (lint and test depend on it, too)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make setup" in ci
    assert re.search(r"^test: setup$", makefile, re.MULTILINE)
    assert re.search(r"^lint: setup$", makefile, re.MULTILINE)
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    runs = re.findall(r"^RUN .*?(?<!\\)$", dockerfile, re.MULTILINE | re.DOTALL)
    pip_installs = [cmd for run in runs for cmd in re.split(r"&&", run) if "pip install" in cmd]
    assert len(pip_installs) >= 6  # pip, torch and the wheel, in both images
    for cmd in pip_installs:
        assert "-c /tmp/constraints.txt" in cmd, cmd
    assert dockerfile.count("COPY constraints.txt /tmp/constraints.txt") == 2
    ignore = (ROOT / "containers" / "Dockerfile.dockerignore").read_text().split()
    assert "!constraints.txt" in ignore


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="checks the repository's own .venv (make setup)",
)
def test_venv_holds_the_locked_versions() -> None:
    """The tests run on what the lock says (a stale .venv fails here: `make setup`)."""
    for name, version in _lock().items():
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name}=={version} is locked but not installed: `make setup`")
        assert Version(got).public == Version(version).public, f"{name}: {got} != {version}"
