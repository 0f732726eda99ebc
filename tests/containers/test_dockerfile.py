"""The container build: Dockerfile stages, pinned bases, non-root user, real entry points,
and a Cloud Build config that builds and pushes both images."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "containers" / "Dockerfile"


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _global_args(parsed: DockerfileParser) -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in parsed.structure:
        if ins["instruction"] == "FROM":
            break
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].split("=", 1)
            args[k.strip()] = v.strip().strip('"')
    return args


def _stages(parsed: DockerfileParser) -> dict[str, dict]:
    """{stage name: {"base": resolved base image, "instructions": [...]}}"""
    args = _global_args(parsed)
    stages: dict[str, dict] = {}
    current = None
    for ins in parsed.structure:
        if ins["instruction"] == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", ins["value"].strip(), re.IGNORECASE)
            assert m, f"line {ins['startline'] + 1}: every stage is named (FROM IMAGE AS NAME)"
            base = re.sub(r"\$\{(\w+)\}", lambda g: args[g.group(1)], m.group(1))
            current = stages.setdefault(m.group(2), {"base": base, "instructions": []})
        elif current is not None:
            current["instructions"].append(ins)
    return stages


def test_targets_exist(parsed) -> None:
    assert {"builder", "cpu", "gpu"} <= set(_stages(parsed))


def test_base_images_pinned(parsed) -> None:
    for name, stage in _stages(parsed).items():
        base = stage["base"]
        if base in _stages(parsed):
            continue
        if "@sha256:" in base:
            assert re.search(r"@sha256:[0-9a-f]{64}$", base), base
            continue
        assert ":" in base.rsplit("/", 1)[-1], f"stage {name}: base {base} has no tag"
        tag = base.rsplit(":", 1)[1]
        assert tag != "latest" and re.search(r"\d+\.\d+(\.\d+)?", tag), (
            f"stage {name}: base {base} must be pinned to a versioned tag or digest"
        )


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_runs_as_non_root(parsed, target) -> None:
    users = [
        i["value"].strip()
        for i in _stages(parsed)[target]["instructions"]
        if i["instruction"] == "USER"
    ]
    assert users, f"{target}: no USER instruction (would run as root)"
    assert users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    runs = " ".join(
        i["value"] for i in _stages(parsed)[target]["instructions"] if i["instruction"] == "RUN"
    )
    assert "useradd" in runs and users[-1] in runs  # the user is created in the image


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_torch_pinned_and_installed_before_medprune(parsed, target) -> None:
    runs = [
        i["value"] for i in _stages(parsed)[target]["instructions"] if i["instruction"] == "RUN"
    ]
    torch_idx = next(i for i, r in enumerate(runs) if "torch==${TORCH_VERSION}" in r)
    wheel_idx = next(i for i, r in enumerate(runs) if "/tmp/wheels/*.whl" in r)
    # the PyTorch index's CPU or CUDA wheel, named by its local label (+cpu, +cu128)
    assert torch_idx < wheel_idx and "--extra-index-url" in runs[torch_idx]
    assert re.search(r'"torch==\$\{TORCH_VERSION\}\+(cpu|\$\{TORCH_CUDA\})"', runs[torch_idx])
    assert _global_args(parsed)["TORCH_VERSION"] == "2.13.0"


def test_entry_points_exist(parsed) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = project["project"]["scripts"]
    for target in ("cpu", "gpu"):
        cmds = [
            i
            for i in _stages(parsed)[target]["instructions"]
            if i["instruction"] in ("CMD", "ENTRYPOINT")
        ]
        assert cmds, f"{target}: no CMD"
        argv = yaml.safe_load(cmds[-1]["value"])  # exec form is a JSON list
        assert isinstance(argv, list), f"{target}: use the exec form of CMD"
        assert argv[0] in scripts, f"{target}: {argv[0]} is not a console script of the package"
        module, func = scripts[argv[0]].split(":")
        path = ROOT / "src" / Path(*module.split(".")).with_suffix(".py")
        assert path.is_file(), f"{scripts[argv[0]]}: {path} missing"
        assert re.search(rf"^def {func}\(", path.read_text(), re.MULTILINE), f"{func} not in {path}"
    # the build smoke-tests the installed entry point, too
    runs = " ".join(
        i["value"] for i in _stages(parsed)["cpu"]["instructions"] if i["instruction"] == "RUN"
    )
    assert "medprune --help" in runs


def test_copied_sources_exist(parsed) -> None:
    for ins in _stages(parsed)["builder"]["instructions"]:
        if ins["instruction"] == "COPY" and "--from" not in ins["value"]:
            *sources, _dest = ins["value"].split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    ignore = (ROOT / "containers" / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!setup.py", "!src/", "!components/", "!pipelines/"):
        assert needed in ignore


def test_cloudbuild_builds_and_pushes_both_targets() -> None:
    cb = yaml.safe_load((ROOT / "containers" / "cloudbuild.yaml").read_text())
    builds = {}
    for step in cb["steps"]:
        args = step.get("args", [])
        if args[:1] == ["build"]:
            target = next(a.split("=", 1)[1] for a in args if a.startswith("--target="))
            assert "--file=containers/Dockerfile" in args and args[-1] == "."
            builds[target] = [a.split("=", 1)[1] for a in args if a.startswith("--tag=")]
            assert any(a.startswith("--cache-from=") for a in args)
    assert set(builds) == {"cpu", "gpu"}
    for target, tags in builds.items():
        assert f"${{_IMAGE_PREFIX}}/medprune-{target}:${{_TAG}}" in tags
        assert set(tags) <= set(cb["images"])  # everything built is pushed
    prefix = cb["substitutions"]["_IMAGE_PREFIX"]
    assert re.fullmatch(
        r"\$\{_REGION\}-docker\.pkg\.dev/\$\{PROJECT_ID\}/\$\{_REPOSITORY\}", prefix
    )
    assert cb["options"]["dynamicSubstitutions"] is True


def test_cloudbuild_tag_is_never_empty_and_the_version_tag_is_pushed() -> None:
    """`gcloud builds submit` has no SHORT_SHA: a tag defaulting to it is empty and the build
    fails; and `medprune compile` defaults to REPO/medprune-{gpu,cpu}:VERSION."""
    import tomllib

    cb = yaml.safe_load((ROOT / "containers" / "cloudbuild.yaml").read_text())
    tag = cb["substitutions"]["_TAG"]
    assert "${BUILD_ID}" in tag and "SHORT_SHA" not in tag
    (step,) = [s for s in cb["steps"] if s.get("id") == "version-tags"]
    script = step["args"][-1]
    assert "pyproject.toml" in script and "docker push" in script
    assert "medprune-$$target:$$VERSION" in script
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    import re as _re

    got = _re.search(r"sed -n '(.*)' pyproject.toml", script).group(1).replace("$$", "$")
    import subprocess

    out = subprocess.run(
        ["sed", "-n", got, str(ROOT / "pyproject.toml")], capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines()[0] == version
