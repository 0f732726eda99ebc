"""run-local's quiet terminal, on real kfp.local output: two small components run as
subprocesses, one printing progress, one raising a medprune error."""

import io

from kfp import dsl, local

from medprune.run_log import RunLog, strip_ansi, task_label


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def chatty(label: str) -> str:
    import sys
    import warnings

    print("step 1/2")
    for pct in (0, 50, 100):
        sys.stdout.write(f"work: {pct:3d}%|{'#' * (pct // 10):10s}| {pct // 50}/2\n")
    warnings.warn("a library warning nobody needs to see", stacklevel=1)
    print("step 2/2")
    return label


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def broken(label: str):
    from medprune.errors import DataError

    try:
        {}["answer"]
    except KeyError as exc:
        raise DataError("data/mcq.jsonl:3: field 'answer' 7 is out of range for 4 options") from exc


@dsl.pipeline(name="two-steps")
def two_steps():
    first = chatty(label="baseline")
    broken(label="candidate").after(first)


def test_terminal_gets_task_lines_progress_and_the_error(tmp_path):
    terminal = io.StringIO()
    with RunLog(tmp_path / "run.log", terminal) as log, log.capture():
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(tmp_path / "root"),
            raise_on_error=True,
        )
        try:
            two_steps()
            raised = False
        except RuntimeError:
            raised = True
    assert raised
    lines = terminal.getvalue().splitlines()
    shown = [line.split("] ", 1)[-1] for line in lines]
    assert shown[0] == "chatty baseline: started"
    assert shown[1:4] == ["  step 1/2", "  work: 100%|##########| 2/2", "  step 2/2"]
    assert shown[4].startswith("chatty baseline: done in ")
    assert shown[5] == "broken candidate: started"
    assert shown[6].startswith("broken candidate: FAILED after ")
    assert len(lines) == 7, lines
    assert log.failure == (
        "broken candidate",
        "data/mcq.jsonl:3: field 'answer' 7 is out of range for 4 options",
    )
    text = (tmp_path / "run.log").read_text()
    assert "Got executor_input:" in text and "a library warning" in text and "Traceback" in text
    assert "KeyError" in text and "\x1b[" not in text


def test_verbose_shows_everything(tmp_path):
    terminal = io.StringIO()
    with RunLog(tmp_path / "run.log", terminal, verbose=True) as log:
        log.write(
            "12:00:00.000 - INFO - Executing task \x1b[96m'load-component'\x1b[0m\nanything\n"
        )
    assert (
        terminal.getvalue()
        == "12:00:00.000 - INFO - Executing task \x1b[96m'load-component'\x1b[0m\nanything\n"
    )
    assert (
        tmp_path / "run.log"
    ).read_text() == "12:00:00.000 - INFO - Executing task 'load-component'\nanything\n"


def test_names():
    assert task_label("evaluate-component-2", "candidate") == "evaluate candidate"
    assert task_label("load-component") == "load"
    assert strip_ansi("\x1b[92mSUCCESS\x1b[0m") == "SUCCESS"


def test_kfp_print_guard_puts_print_back():
    """kfp.local swaps builtins.print; the guard every in-process run uses undoes a swap that
    was left behind (contexts closed out of order)."""
    import builtins

    from medprune.run_log import kfp_print_restored

    original = builtins.print
    with kfp_print_restored():
        builtins.print = lambda *a, **k: original("    ", *a, **k)  # what kfp leaves installed
    assert builtins.print is original


def test_lines_written_from_several_threads_stay_whole(tmp_path):
    """kfp streams stdout and stderr from two threads into the same RunLog."""
    import io
    import threading

    from medprune.run_log import RunLog

    log = RunLog(tmp_path / "run.log", io.StringIO(), verbose=True)

    def writer(tag: str) -> None:
        for i in range(2000):
            log.write(f"{tag} line {i} " + "x" * 40 + "\n")

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("out", "err", "aux")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = (tmp_path / "run.log").read_text(encoding="utf-8").splitlines()
    for tag in ("out", "err", "aux"):
        mine = [line for line in lines if line.startswith(f"{tag} line ")]
        assert mine == [f"{tag} line {i} " + "x" * 40 for i in range(2000)]
