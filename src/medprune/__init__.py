"""medprune: prune clinical LLMs, win back accuracy, prove it, register it."""

__version__ = "0.1.0"
