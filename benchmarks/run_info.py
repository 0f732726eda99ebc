"""What a benchmark run records about itself: commit, package versions, command line,
machine and date, so that every results file says how it was made."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "medprune",
    "torch",
    "transformers",
    "accelerate",
    "numpy",
    "llmcompressor",
    "compressed-tensors",
    "datasets",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def portable_command(argv: list[str], executable: str, cwd: str | None = None) -> str:
    """The command line with every absolute path (the interpreter, arguments, and
    ``--opt=/path`` values) written relative to the working directory, so a results file
    names no folder of the machine it ran on."""
    here = cwd or os.getcwd()

    def rel(token: str) -> str:
        opt, eq, value = token.partition("=")
        if eq and opt.startswith("-") and os.path.isabs(value):
            return f"{opt}={os.path.relpath(value, here)}"
        return os.path.relpath(token, here) if os.path.isabs(token) else token

    return shlex.join([rel(executable), *(rel(a) for a in argv)])


def run_info(threads_per_row: int | None = None) -> dict:
    """Commit (and whether tracked files had changes), package versions, the command line,
    the machine (CPU, cores usable by this process, torch threads per row, load average at
    the start) and the UTC start time."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "commit_dirty": bool(status) if status is not None else None,
        "command": portable_command(sys.argv, Path(sys.executable).as_posix()),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "cores_usable": usable,
            "torch_threads_per_row": threads_per_row,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(),
        },
    }


def results_path(path: str, stem: str, info: dict) -> Path:
    """``path`` itself, or inside directory ``path`` a new file named after the run's
    start time and commit (``<stem>-<YYYYmmddTHHMMZ>-<commit7>.json``, then ``-2``, ``-3``
    for runs started in the same minute): one file per run, never an earlier run's."""
    p = Path(path)
    if not (p.is_dir() or path.endswith("/")):
        return p
    p.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.fromisoformat(info["date"]).strftime("%Y%m%dT%H%MZ")
    commit = (info.get("commit") or "nogit")[:7]
    name, n = f"{stem}-{when}-{commit}", 1
    while (p / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{when}-{commit}-{n}"
    return p / f"{name}.json"


#: A timing ran alone when the other processes on the machine used at most this many cores
#: on average while it ran (kernel threads and an idle shell use far less).
ALONE_MAX_OTHER_CORES = 0.1


def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """This process's CPU seconds plus those of its finished children (llama-bench etc.)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


class TimingWindow:
    """Whether a timing had the machine to itself: the load average at its start and end,
    and the CPU time every *other* process used meanwhile (the machine's busy time from
    ``/proc/stat`` minus this process's and its children's), as average cores. The load
    average is a slow, smoothed number (a job that ended a minute ago still shows); the CPU
    share is what actually competed with the timing.

        window = TimingWindow()
        ...  # run llama-bench
        record = window.stop()  # {"alone": True, "other_cores": 0.02, ...}
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.load_at_start = _load()
        self.busy_at_start = _busy_cpu_seconds()
        self.own_at_start = _own_cpu_seconds()

    def stop(self) -> dict:
        """The window so far (it may be stopped again later for a longer window)."""
        wall = time.perf_counter() - self.started
        busy = _busy_cpu_seconds()
        own = _own_cpu_seconds() - self.own_at_start
        other = None
        if busy is not None and self.busy_at_start is not None:
            other = max(0.0, busy - self.busy_at_start - own)
        other_cores = other / wall if other is not None and wall > 0 else None
        return {
            "load_average_at_start": self.load_at_start,
            "load_average_at_end": _load(),
            "wall_s": round(wall, 2),
            "own_cpu_s": round(own, 2),
            "other_cpu_s": round(other, 2) if other is not None else None,
            "other_cores": round(other_cores, 3) if other_cores is not None else None,
            "alone_max_other_cores": ALONE_MAX_OTHER_CORES,
            "alone": other_cores <= ALONE_MAX_OTHER_CORES if other_cores is not None else None,
        }
