"""Hang detection (hpcne.watchdog): an evaluation that stops making progress ends the process with a
report and the stacks, whether the hang releases the GIL or holds it; steady progress never trips it.

Each case runs a small script in a subprocess (the watchdog ends the process it watches).
"""

from __future__ import annotations

import os
import re
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


def test_a_hang_that_holds_the_gil_is_caught_by_faulthandler() -> None:
    done = run("re.match(r'(a+)+$', 'a' * 60 + 'b')  # catastrophic backtracking in C, GIL held")
    assert done.returncode == 1, done.stderr
    assert "Timeout (0:00:06)!" in done.stderr
    assert 'File "<string>", line 6 in fitness' in done.stderr


def test_steady_progress_never_trips_it() -> None:
    done = run("time.sleep(0.8)", timeout="2")  # 3.2 s in all, but a new solution every 0.8 s
    assert done.returncode == 0, done.stderr
    assert "finished" in done.stdout


def test_zero_turns_it_off() -> None:
    done = run("time.sleep(1.5)", timeout="0")
    assert done.returncode == 0, done.stderr


def test_a_fork_inside_a_watched_evaluation_is_safe() -> None:
    """faulthandler's countdown does not survive a fork: a child that inherited it armed would deadlock."""
    done = run(
        textwrap.dedent("""
        time.sleep(0.3)  # the watchdog thread has armed faulthandler by now
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
