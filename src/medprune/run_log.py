"""A quiet terminal for ``medprune run-local``: everything kfp.local prints (its own log,
every task's executor input, the tasks' output) goes to a log file under the run directory;
the terminal gets one line when a task starts, one when it ends (with its duration), the
stages' progress lines, and, when a task fails, the one message that explains why.

    with RunLog(run_dir / "run.log", terminal=sys.stdout) as log:
        with log.capture():          # sys.stdout/sys.stderr go through the log while kfp runs
            pipeline(...)
    log.failure                      # (task, message) of the task that failed, if one did

kfp.local writes through the ``logging`` module (a handler on ``sys.stdout`` made when each
task starts) and copies each task's subprocess output to ``sys.stdout`` with ``print``; both
are captured by replacing ``sys.stdout`` and ``sys.stderr`` for the run.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TIMESTAMP = r"^\d\d:\d\d:\d\d\.\d+ - \w+ - "
_START = re.compile(_TIMESTAMP + r"Executing task '(?P<task>[^']+)'")
_END = re.compile(_TIMESTAMP + r"Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")
_STREAM = re.compile(_TIMESTAMP + r"Streamed logs:")
_OUTPUTS = re.compile(_TIMESTAMP + r"Task '[^']+' (outputs:|has no outputs)")
_BAR = re.compile(r"^(?P<label>[^:|]*?):?\s*(?P<pct>\d+)%\|")
_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")
_EXCEPTION = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)?): (?P<msg>.*)$|^(?P<bare>[A-Za-z_][\w.]*Error)$"
)
#: transformers' own progress bars (reading and writing weights): noise in a run's terminal
_QUIET_BARS = ("Loading weights", "Writing model shards", "Loading checkpoint shards")
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
_INDENT = "    "  # kfp.local indents a task's output by four spaces


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


_LABEL_PARAM = re.compile(r'^\s*"label": "(?P<label>[\w-]+)",?$')


@contextlib.contextmanager
def kfp_print_restored() -> Iterator[None]:
    """Put ``builtins.print`` back as it was when the block ends.

    kfp.local indents task output by swapping ``builtins.print`` inside a context manager;
    when two of those contexts close out of order (seen in one process that runs several
    local pipelines, as the test suite does), the indenting print stays installed and every
    later ``print`` of the process is shifted, so ``summary: PATH`` lines and the run log's
    parsing break. Every in-process kfp.local run goes through this guard."""
    original = builtins.print
    try:
        yield
    finally:
        builtins.print = original


def task_label(task: str, label: str | None = None) -> str:
    """``load-component`` -> ``load``; ``evaluate-component-2`` with its ``label`` parameter
    ``candidate`` -> ``evaluate candidate``."""
    name = re.sub(r"-component(-\d+)?$", "", task)
    return f"{name} {label}" if label else name


class RunLog(io.TextIOBase):
    """A text stream that writes everything to ``log_path`` and echoes the lines a person
    needs to ``terminal`` (everything with ``verbose``)."""

    def __init__(self, log_path: str | Path, terminal: TextIO, *, verbose: bool = False):
        self.path = Path(log_path)
        self.terminal = terminal
        self.verbose = verbose
        self._file = self.path.open("a", encoding="utf-8")
        self._pending = ""
        self._in_task = False
        self._in_json = False
        self._in_traceback = False
        self._after_warning = False
        self._task: str | None = None
        self._label: str | None = None  # the task's "label" parameter (baseline / candidate)
        self._announced = False
        self._start_clock = ""
        self._started = 0.0
        self._bar: tuple[str, str] | None = None  # (label, last line) of a progress bar
        self._exception: list[str] = []
        self.failure: tuple[str, str] | None = None  # (task, message)
        self.durations: dict[str, float] = {}
        # kfp streams a task's stdout and stderr from separate threads into this one stream;
        # an io.TextIOWrapper written from two threads at once can write corrupted bytes
        # (seen: NULs and pointer bytes in run.log), so every write holds this lock.
        self._lock = threading.RLock()

    # -- stream interface ----------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            while True:
                line, sep, rest = self._pending.partition("\n")
                if not sep:
                    break
                self._pending = rest
                self._line(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
            self.terminal.flush()

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._line(self._pending)
                self._pending = ""
            self._file.close()
        super().close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def capture(self) -> Iterator[RunLog]:
        """Send ``sys.stdout`` and ``sys.stderr`` (kfp's logs, task output, warnings) here."""
        with (
            kfp_print_restored(),
            contextlib.redirect_stdout(self),
            contextlib.redirect_stderr(self),
        ):
            yield self
        self.flush()

    def note(self, text: str) -> None:
        """A line for both the terminal and the log."""
        with self._lock:
            self._file.write(text + "\n")
            self.terminal.write(text + "\n")

    # -- classification ------------------------------------------------------------------
    def _show(self, text: str) -> None:
        if not self.verbose:
            self.terminal.write(text + "\n")

    def _line(self, raw: str) -> None:
        line = strip_ansi(raw).rstrip("\r")
        self._file.write(line + "\n")
        if self.verbose:
            self.terminal.write(raw + "\n")
        # a progress bar that rewrites itself with \r: its last state
        line = line.rsplit("\r", 1)[-1]
        if m := _START.match(line):
            self._task, self._started, self._in_task = m["task"], time.monotonic(), False
            self._start_clock, self._label, self._announced = time.strftime("%H:%M:%S"), None, False
            self._exception = []
            return
        if _STREAM.match(line):
            self._in_task = True
            return
        if m := _END.match(line):
            self._end_task(m["task"], m["status"])
            return
        if _OUTPUTS.match(line):
            self._in_task = False
            return
        if self._in_task and (line.startswith(_INDENT) or not line.strip()):
            self._task_line(line[len(_INDENT) :] if line.startswith(_INDENT) else "")

    def _announce(self) -> None:
        """The task's start line, once its input (which may name its label) has been read."""
        if self._task and not self._announced:
            self._announced = True
            self._show(f"[{self._start_clock}] {task_label(self._task, self._label)}: started")

    def _end_task(self, task: str, status: str) -> None:
        self._announce()
        self._flush_bar()
        self._in_task = self._in_json = self._in_traceback = False
        seconds = time.monotonic() - self._started if self._task == task else 0.0
        self.durations[task] = seconds
        label = task_label(task, self._label)
        if status == "SUCCESS":
            self._show(f"[{time.strftime('%H:%M:%S')}] {label}: done in {seconds:.1f} s")
            return
        message = self._exception_message() or f"the task exited with status {status}"
        if self.failure is None:
            self.failure = (label, message)
        self._show(f"[{time.strftime('%H:%M:%S')}] {label}: FAILED after {seconds:.1f} s")

    def _task_line(self, line: str) -> None:
        if self._in_json:
            if m := _LABEL_PARAM.match(line):
                self._label = m["label"]
            if line == "}":
                self._in_json = False
                self._announce()
            return
        if line.startswith("[KFP Executor"):
            self._in_json = line.rstrip().endswith("Got executor_input:")
            return
        if line.startswith(("Traceback (most recent call last):", *_CHAINED)):
            self._in_traceback, self._exception = True, []
            return
        if self._in_traceback:
            self._traceback_line(line)
            return
        if self._after_warning:
            self._after_warning = False
            if line.startswith(" "):
                return
        if _WARNING.match(line):
            self._after_warning = True
            return
        if not line.strip():
            return
        self._announce()
        bar = _BAR.match(line)
        if bar:
            label = bar["label"].strip()
            if self._bar and self._bar[0] != label:
                self._flush_bar()
            self._bar = None if label.startswith(_QUIET_BARS) else (label, line)
            return
        self._flush_bar()
        self._show(f"  {line}")

    def _traceback_line(self, line: str) -> None:
        if line.startswith(" ") or not line.strip():
            if self._exception and not line.strip():
                self._in_traceback = False
            elif self._exception:
                self._exception.append(line.strip())
            return
        if line.startswith(_CHAINED):
            self._exception = []
            return
        if self._exception:  # the message's continuation lines
            self._exception.append(line.strip())
        elif _EXCEPTION.match(line):
            self._exception = [line]
        else:
            self._exception = [line]

    def _exception_message(self) -> str | None:
        if not self._exception:
            return None
        first = self._exception[0]
        m = _EXCEPTION.match(first)
        kind = (m["type"] or m["bare"]) if m else ""
        text = " ".join(
            [(m["msg"] if m and m["msg"] is not None else first), *self._exception[1:]]
        ).strip()
        if kind.startswith("medprune.errors."):
            return text  # a user-facing error: its message says what and where
        return f"{kind.rsplit('.', 1)[-1]}: {text}" if kind else text

    def _flush_bar(self) -> None:
        if self._bar:
            self._show(f"  {self._bar[1].strip()}")
            self._bar = None
