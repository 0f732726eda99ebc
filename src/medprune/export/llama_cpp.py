"""llama.cpp, built from a pinned source archive, for exporting and running GGUF files.

The llama.cpp project publishes no wheel that loads on older glibc / libstdc++ (the prebuilt
``llama-cpp-*`` wheels on the package index need GLIBC_2.38), so it is built from source: the
llama-cpp-python source archive (``LLAMA_CPP_PYTHON_VERSION``, sha256-checked) carries llama.cpp
(``vendor/llama.cpp``) with its own ``convert_hf_to_gguf.py`` and ``gguf-py``. ``build`` fetches
the archive with pip from the package index, extracts it under ``root`` (default
``$MEDPRUNE_CACHE/llama.cpp``, i.e. ``.cache/medprune/llama.cpp``) and builds the ``llama-bench``
and ``llama-perplexity`` tools with cmake; a finished build is reused. Nothing from llama.cpp is
part of this repository. This module uses only the standard library, so ``make llama-cpp`` can
run it before anything else is installed (``python -m medprune.export.llama_cpp build``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TOOLS = ("llama-bench", "llama-perplexity")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
)


class LlamaCppMissing(RuntimeError):
    """llama.cpp has not been built (``make llama-cpp``) where it was looked for."""


def default_root() -> Path:
    """``$MEDPRUNE_LLAMA_CPP`` if set, else ``llama.cpp`` under ``$MEDPRUNE_CACHE`` (default
    ``.cache/medprune``) in the working directory."""
    if os.environ.get("MEDPRUNE_LLAMA_CPP"):
        return Path(os.environ["MEDPRUNE_LLAMA_CPP"])
    return Path(os.environ.get("MEDPRUNE_CACHE", ".cache/medprune")) / "llama.cpp"


@dataclass(frozen=True)
class LlamaCpp:
    """Paths of one extracted (and possibly built) llama.cpp source tree."""

    root: Path

    @property
    def source(self) -> Path:
        return self.root / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"

    @property
    def converter(self) -> Path:
        return self.source / "convert_hf_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.source / "gguf-py"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def tool(self, name: str) -> Path:
        return self.build_dir / "bin" / name

    def has_source(self) -> bool:
        return self.converter.is_file() and (self.gguf_py / "gguf" / "__init__.py").is_file()

    def is_built(self) -> bool:
        return self.has_source() and all(os.access(self.tool(t), os.X_OK) for t in TOOLS)

    def require_source(self) -> LlamaCpp:
        if not self.has_source():
            raise LlamaCppMissing(
                f"llama.cpp's converter is not at {self.converter}: run `make llama-cpp` "
                f"(or `python -m medprune.export.llama_cpp fetch` for the source only)"
            )
        return self

    def require_built(self) -> LlamaCpp:
        if not self.is_built():
            raise LlamaCppMissing(
                f"llama.cpp tools {', '.join(TOOLS)} are not built under {self.build_dir / 'bin'}: "
                "run `make llama-cpp`"
            )
        return self

    def converter_env(self) -> dict[str, str]:
        """Environment for running the converter with its own gguf-py first on the path."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.gguf_py.resolve())] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        return env


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(root: Path | None = None, python: str = sys.executable) -> LlamaCpp:
    """Download the pinned source archive with pip, check its sha256 and extract it under root."""
    lc = LlamaCpp(root or default_root())
    if lc.has_source():
        return lc
    lc.root.mkdir(parents=True, exist_ok=True)
    archive = lc.root / SDIST_NAME
    if not archive.is_file() or sha256_of(archive) != SDIST_SHA256:
        with tempfile.TemporaryDirectory(dir=lc.root) as tmp:
            print(f"llama.cpp: downloading {SDIST_NAME} from the package index", flush=True)
            subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "-q",
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
                    "-d",
                    tmp,
                ],
                check=True,
            )
            got = Path(tmp) / SDIST_NAME
            digest = sha256_of(got)
            if digest != SDIST_SHA256:
                raise RuntimeError(
                    f"{SDIST_NAME}: sha256 {digest} is not the pinned {SDIST_SHA256}; refusing it"
                )
            shutil.move(str(got), archive)
    print(f"llama.cpp: extracting {archive}", flush=True)
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory(dir=lc.root) as tmp:
        tar.extractall(tmp, filter="data")
        dest = lc.root / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(Path(tmp) / dest.name), dest)
    return lc.require_source()


def build(root: Path | None = None, jobs: int | None = None) -> LlamaCpp:
    """Fetch (if needed) and build llama-bench and llama-perplexity; reuse a finished build."""
    lc = fetch(root)
    if lc.is_built():
        print(f"llama.cpp: already built in {lc.build_dir}", flush=True)
        return lc
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is not installed (apt-get install cmake)")
    jobs = jobs or os.cpu_count() or 1
    subprocess.run(
        ["cmake", "-S", str(lc.source), "-B", str(lc.build_dir), *CMAKE_FLAGS], check=True
    )
    # cmake prints [ NN%] progress lines for every compiled file
    subprocess.run(
        ["cmake", "--build", str(lc.build_dir), "-j", str(jobs), "--target", *TOOLS], check=True
    )
    return lc.require_built()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m medprune.export.llama_cpp")
    p.add_argument("action", choices=["fetch", "build", "where"])
    p.add_argument("--root", type=Path, default=None, help="default: $MEDPRUNE_CACHE/llama.cpp")
    p.add_argument("--jobs", type=int, default=None)
    args = p.parse_args(argv)
    if args.action == "fetch":
        print(fetch(args.root).source)
    elif args.action == "build":
        print(build(args.root, args.jobs).build_dir / "bin")
    else:
        lc = LlamaCpp(args.root or default_root())
        print(f"{lc.root} source={lc.has_source()} built={lc.is_built()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
