"""Hang detection (hpcne.watchdog): an evaluation that stops making progress ends the process with a
report and the stacks, whether the hang releases the GIL, holds it, or the process was stopped;
steady progress never trips it. User code that leaves the process (os._exit, SystemExit,
KeyboardInterrupt) is reported too.

Each case runs a small script in a subprocess (the watchdog ends the process it watches).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from hpcne import watchdog

PROBLEM = """
import os, re, sys, time, torch
from hpcne.core import Problem

def fitness(x):
    {body}
    return float(x.sum())

problem = Problem("min", fitness, solution_length=2, seed=0, num_actors=None)
problem.evaluate_values(torch.zeros(4, 2))
print("finished", flush=True)
"""


def run(body: str, timeout: str = "1") -> subprocess.CompletedProcess[str]:
    """Evaluate 4 solutions serially, with ``body`` in the fitness function, under a hang timeout."""
    env = {**os.environ, "HPCNE_HANG_TIMEOUT": timeout, "HPCNE_QUIET": "1"}
    code = PROBLEM.format(body=body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_a_hang_that_releases_the_gil_ends_the_process_with_a_report() -> None:
    done = run("time.sleep(3600)")
    assert done.returncode == watchdog.EXIT_HUNG, done.stderr
    assert "finished" not in done.stdout
    assert re.search(r"hpcne: the evaluating process \(pid \d+\) on host \S+ made no progress", done.stderr)
    assert "made no progress for 1 s while evaluating solutions 0-3 of evaluation round 0" in done.stderr
    assert 'File "<string>", line 6 in fitness' in done.stderr  # the hung frame


@pytest.mark.parametrize(
    ("body", "how"),
    [
        ("re.match(r'(a+)+$', 'a' * 60 + 'b')  # catastrophic backtracking in C", "it holds the GIL in native code"),
        ("os.kill(os.getpid(), 19)  # SIGSTOP", r"it is stopped \(SIGSTOP or a debugger\)"),
    ],
    ids=["holds-the-gil", "stopped"],
)
def test_a_hang_the_process_cannot_report_is_ended_from_outside(body: str, how: str) -> None:
    """Neither can run the watchdog thread; the watcher process reports and kills them (1 s + 5 s grace)."""
    done = run(body)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "finished" not in done.stdout
    assert re.search(
        rf"hpcne: the evaluating process \(pid \d+\) on host \S+ made no progress for \d+ s while evaluating "
        rf"solutions 0-3 of evaluation round 0, and could not report it itself: {how}",
        done.stderr,
    ), done.stderr
    if "GIL" in how:
        assert 'File "<string>", line 6 in fitness' in done.stderr  # faulthandler's stack, printed without the GIL


def test_os_exit_in_user_code_is_reported() -> None:
    done = run("os._exit(3)")
    assert done.returncode == 3, done.stderr
    assert re.search(
        r"hpcne: the evaluating process \(pid \d+\) on host \S+ called os._exit\(3\) while evaluating solutions 0-3",
        done.stderr,
    ), done.stderr


@pytest.mark.parametrize("raised", ["SystemExit(0)", "KeyboardInterrupt()"])
def test_system_exit_or_keyboard_interrupt_in_user_code_is_a_failure(raised: str) -> None:
    """Serially, ``sys.exit(0)`` in a fitness function once ended the run quietly with status 0."""
    done = run(f"raise {raised}")
    assert done.returncode == 1, done.stderr
    assert "finished" not in done.stdout
    assert re.search(r"WorkerError: serial process 0 on host \S+ failed while evaluating solution 0:", done.stderr)
    assert raised.split("(")[0] in done.stderr


def test_steady_progress_never_trips_it() -> None:
    done = run("time.sleep(0.8)", timeout="2")  # 3.2 s in all, but a new solution every 0.8 s
    assert done.returncode == 0, done.stderr
    assert "finished" in done.stdout


def test_zero_turns_it_off() -> None:
    done = run("time.sleep(1.5)", timeout="0")
    assert done.returncode == 0, done.stderr


def test_a_fork_inside_a_watched_evaluation_is_safe() -> None:
    """A child forked mid-piece watches its own pieces; its parent's watcher does not wait for it."""
    done = run(
        textwrap.dedent("""
        time.sleep(0.3)  # the watchdog thread and the watcher process run by now
        pid = os.fork()
        if pid == 0:
            from hpcne import watchdog
            with watchdog.watching("the child's piece"):
                time.sleep(0.1)
            os._exit(7)
        assert os.waitpid(pid, 0)[1] >> 8 == 7
        """).replace("\n", "\n    ")
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text", ["soon", "-1", "nan", "inf"])
def test_a_bad_setting_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    from hpcne.core import Problem

    monkeypatch.setenv("HPCNE_HANG_TIMEOUT", text)
    problem = Problem("min", lambda x: 0.0, solution_length=2, num_actors=None)
    with pytest.raises(ValueError, match=rf"HPCNE_HANG_TIMEOUT='{text}' is not a number of seconds; use e.g. 600"):
        _ = problem.runtime
    with pytest.raises(ValueError, match="hang_timeout must be a non-negative number of seconds"):
        watchdog.set_hang_timeout(-1)
