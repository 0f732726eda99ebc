"""How stages report progress: a callable that takes one line of text."""

from collections.abc import Callable

Progress = Callable[[str], None]
