"""Helpers of the training-run tests (the fixtures are in conftest.py): run ``hpcne`` as a subprocess or
under ``mpiexec``, watch its results file grow, stop it, and compare runs bit for bit.

The constants fix the tiny run most tests share: CartPole-v1, 8 solutions, 50-step episodes, one
checkpoint per generation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hpcne.io.analysis import read_results
from hpcne.io.checkpoint import CheckpointManager
from hpcne.io.tree import tree_digest
from hpcne.parallel.launch import find_mpiexec

GENERATIONS = 20
"""Generations of the shared tiny run."""

TINY = [
    "--env", "CartPole-v1", "--popsize", "8", "--episode-length", "50", "--seed", "7", "--no-obs-norm",
    "--generations", str(GENERATIONS), "--checkpoint-every", "1", "--keep-checkpoints", "3",
]  # fmt: skip
"""Flags of the shared tiny run (without --workers / --run-dir). Observation normalization is off, so that
results do not depend on the layout (serial, pool, MPI); with it on, statistics merged from several
workers may differ from serial ones in the last bits."""

TINY_OBS_NORM = [*TINY, "--obs-norm"]
"""The tiny run with observation normalization (the last flag wins)."""

LONG_GENERATIONS = 60
"""Generations of the longer tiny run that the stop-signal test interrupts seven times: a stop lands a
few generations after the one the test saw (a tiny generation takes milliseconds), so the run needs room."""

TINY_LONG = [*TINY, "--generations", str(LONG_GENERATIONS)]
"""The tiny run, longer (the last flag wins)."""

TIMING_COLUMNS = ("wall_time", "eval_time", "comm_time", "update_time")
"""Result columns that measure time and so differ between otherwise identical runs."""

MPIEXEC_TIMEOUT = 120  # the launcher kills a hung MPI job after this many seconds
TIMEOUT = 150  # and a test gives up on any subprocess after this many


def mpiexec() -> str:
    """The ``mpiexec`` of this interpreter's environment (the mpich wheel's), or skip."""
    found = find_mpiexec()
    if found is None:
        pytest.skip("mpiexec was not found; install the dev extras (`pip install -e '.[dev,mpich]'`).")
    return found


def command(args: Sequence[str], *, ranks: int = 0) -> list[str]:
    """``python -m hpcne ARGS``, or the same on ``ranks`` MPI ranks."""
    if ranks:
        return [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", "hpcne", *args]
    return [sys.executable, "-m", "hpcne", *args]


def environment(**extra: str) -> dict[str, str]:
    """The environment of every subprocess: quiet, no forced backend, a launcher time limit."""
    env = {**os.environ, "HPCNE_QUIET": "1", "MPIEXEC_TIMEOUT": str(MPIEXEC_TIMEOUT), "PYTHONUNBUFFERED": "1"}
    env.pop("HPCNE_BACKEND", None)
    env.update(extra)
    return env


@dataclass
class Done:
    """A finished command: exit status and output."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        command = " ".join(self.args)
        return f"$ {command}\n[exit {self.returncode}]\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Running:
    """A command running in its own session (process group); output goes to files, never a full pipe."""

    args: list[str]
    proc: subprocess.Popen
    out_path: Path
    err_path: Path
    seen_rows: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int, *, group: bool = False) -> None:
        """Send a signal to the process, or to its whole process group (as a terminal or SLURM does)."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def process_tree(self) -> list[tuple[int, str]]:
        """This command's process and all its descendants, as (pid, command line).

        Hydra's ``mpiexec`` puts its proxies and the ranks in sessions of their own, so a process group
        does not reach them; the parent links do.
        """
        table = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
            table[int(entry)] = (parent, cmdline)
        tree = [self.proc.pid] if self.proc.pid in table else []
        for pid in tree:  # grows while iterating: breadth-first
            tree += [child for child, (parent, _) in table.items() if parent == pid and child not in tree]
        return [(pid, table[pid][1]) for pid in tree]

    def rank_pids(self) -> list[int]:
        """The Python processes that run hpcne under mpiexec (one per rank), not the launcher or its proxies."""
        return [
            pid
            for pid, cmdline in self.process_tree()
            if "-m hpcne" in cmdline and "mpiexec" not in cmdline and "hydra" not in cmdline
        ]

    def kill_group(self) -> None:
        """SIGKILL the command and every process it started (launcher, proxies, ranks, pool workers), as
        a node failure or ``scancel --signal=KILL`` would."""
        tree = [pid for pid, _ in self.process_tree()]
        for pid in tree[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in tree) and time.monotonic() < deadline:  # their files are closed
            time.sleep(0.01)

    def wait(self, timeout: float = TIMEOUT) -> Done:
        """Wait for the command to end (killing it on timeout, which fails the test)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.proc.wait()
            pytest.fail(f"timed out after {timeout} s:\n{self.done().output}")
        return self.done()

    def done(self) -> Done:
        return Done(self.args, self.proc.returncode, self.out_path.read_text(), self.err_path.read_text())

    def wait_rows(self, run_dir: Path, rows: int, timeout: float = TIMEOUT) -> int:
        """Poll the results file (as a SWMR reader) until it holds at least ``rows`` rows; return the count.

        Every count seen is appended to ``seen_rows``. Fails the test if the command ends first.
        """
        deadline = time.monotonic() + timeout
        while True:
            count = result_rows(run_dir)
            if count is not None:
                if not self.seen_rows or self.seen_rows[-1] != count:
                    self.seen_rows.append(count)
                if count >= rows:
                    return count
            if not self.alive():
                pytest.fail(f"the run ended before logging {rows} rows:\n{self.done().output}")
            if time.monotonic() > deadline:
                self.kill_group()
                pytest.fail(f"no {rows} rows after {timeout} s:\n{self.done().output}")
            time.sleep(0.02)


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def result_rows(run_dir: Path) -> int | None:
    """Rows in a run's results file right now, or None while it cannot be read (missing, being created)."""
    try:
        return len(read_results(run_dir))
    except (OSError, KeyError):  # missing file, or the writer holds its lock before switching to SWMR
        return None


class Cli:
    """Runs ``hpcne`` commands in a scratch directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._count = 0

    def run(self, args: Sequence[str], *, ranks: int = 0, timeout: float = TIMEOUT, **env: str) -> Done:
        """Run a command to its end."""
        return self.start(args, ranks=ranks, **env).wait(timeout)

    def start(self, args: Sequence[str], *, ranks: int = 0, **env: str) -> Running:
        """Start a command in a new session; its stdout and stderr go to files."""
        self._count += 1
        out = self.workdir / f"cmd{self._count}.out"
        err = self.workdir / f"cmd{self._count}.err"
        full = command([str(a) for a in args], ranks=ranks)
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                full,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=environment(**env),
                cwd=self.workdir,
                start_new_session=True,
            )
        return Running(full, proc, out, err)


# ---------------------------------------------------------------------------- comparing runs
@dataclass
class RunRecord:
    """What a finished run left: its results table, best solution and newest checkpoint."""

    run_dir: Path
    table: Any  # pandas DataFrame
    best: dict[str, np.ndarray]
    searcher_state: dict[str, Any]
    checkpoint_generation: int


def load_run(run_dir: Path) -> RunRecord:
    """Read a run directory."""
    table = read_results(run_dir)
    with h5py.File(run_dir / "results.h5", "r", swmr=True) as f:
        best = {name: f["best"][name][()] for name in f["best"]}
    checkpoint = CheckpointManager(run_dir / "checkpoints").load_latest()
    assert checkpoint is not None, f"{run_dir} has no checkpoint"
    return RunRecord(run_dir, table, best, checkpoint.state["searcher"], checkpoint.generation)


def deterministic_columns(table: Any) -> list[str]:
    return [c for c in table.columns if c not in TIMING_COLUMNS]


def assert_same_run(actual_dir: Path, expected_dir: Path, *, generations: int = GENERATIONS) -> None:
    """The two runs are bit-identical: every deterministic result column, /best, and the final searcher
    state (center, stdev, optimizer, generators, counters) of the newest checkpoint; each generation is
    logged exactly once."""
    actual, expected = load_run(actual_dir), load_run(expected_dir)
    gens = actual.table["generation"].tolist()
    assert gens == list(range(1, generations + 1)), f"generations logged: {gens}"
    assert expected.table["generation"].tolist() == gens
    for column in deterministic_columns(expected.table):
        a, e = actual.table[column].to_numpy(), expected.table[column].to_numpy()
        assert np.array_equal(a, e, equal_nan=a.dtype.kind == "f"), (
            f"column {column} differs:\n{actual.table[column].tolist()}\n{expected.table[column].tolist()}"
        )
    assert actual.best.keys() == expected.best.keys()
    for name, value in expected.best.items():
        assert np.array_equal(actual.best[name], value, equal_nan=True), f"/best/{name} differs"
        assert actual.best[name].tobytes() == value.tobytes(), f"/best/{name} differs in its bits"
    assert actual.checkpoint_generation == expected.checkpoint_generation == generations
    a_center, e_center = actual.searcher_state["search"]["center"], expected.searcher_state["search"]["center"]
    assert a_center.dtype == e_center.dtype and bool((a_center == e_center).all()), "the final centers differ"
    assert tree_digest(actual.searcher_state) == tree_digest(expected.searcher_state), _state_diff(
        actual.searcher_state, expected.searcher_state
    )


def _state_diff(a: Any, b: Any, path: str = "") -> str:
    """The first leaves where two state trees differ (for failure messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in a.keys() ^ b.keys()]
        out += [_state_diff(a[k], b[k], f"{path}/{k}") for k in a.keys() & b.keys()]
        return "\n".join(line for line in out if line)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return "\n".join(_state_diff(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if tree_digest({"v": a}) != tree_digest({"v": b}):
        return f"{path}: {a!r} != {b!r}"[:400]
    return ""


def copy_run(source: Path, target: Path) -> Path:
    """Copy a run directory."""
    shutil.copytree(source, target)
    return target
