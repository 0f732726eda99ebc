"""medprune: prune clinical LLMs, win back accuracy, prove it, register it."""

from importlib.metadata import PackageNotFoundError, version

# One version source: pyproject.toml's [project] version, read from the installed package's
# metadata (containers/cloudbuild.yaml reads the same line for the image tag).
try:
    __version__ = version("medprune")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
