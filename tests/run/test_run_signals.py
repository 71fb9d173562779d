"""Stop signals: SIGTERM, SIGINT and SIGUSR1 end a run with exit status 75 after a checkpoint of the
generation it stopped at, serially, with a process pool and under MPI; resuming continues exactly."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from run_helpers import LONG_GENERATIONS, TINY, TINY_LONG, Cli, Running, assert_same_run, load_run

from hpcne.run import EXIT_PREEMPTED

# One run, stopped again and again: every signal on every local backend, and SIGUSR1 to every rank of
# an MPI job (as `scancel --signal=USR1` or `#SBATCH --signal=USR1@60` do). Serial and pool runs get
# the signal on their whole process group, as from Ctrl-C in a terminal or from SLURM.
STOPS = [
    ("SIGTERM", "serial"),
    ("SIGINT", "pool"),
    ("SIGUSR1", "serial"),
    ("SIGTERM", "pool"),
    ("SIGINT", "serial"),
    ("SIGUSR1", "pool"),
    ("SIGUSR1", "mpi"),
]


def wait_for_ranks(running: Running, timeout: float = 60.0) -> list[int]:
    """The pids of the two MPI ranks, as soon as both exist."""
    deadline = time.monotonic() + timeout
    while len(ranks := running.rank_pids()) < 2:
        assert time.monotonic() < deadline and running.alive(), running.process_tree()
        time.sleep(0.05)
    assert len(ranks) == 2, running.process_tree()
    return ranks


def stop_once(cli: Cli, run_dir: Path, signame: str, backend: str, done_before: int) -> int:
    """Start (or resume) the run, signal it once it has logged a new generation; return where it stopped."""
    layout = {"serial": ["--workers", "1"], "pool": ["--workers", "2"], "mpi": []}[backend]
    ranks = 2 if backend == "mpi" else 0
    running: Running = cli.start(["train", *TINY_LONG, *layout, "--run-dir", run_dir], ranks=ranks)
    # Find the ranks before the run gets going: scanning /proc takes longer than a tiny generation,
    # and the signal must arrive before the run's last one.
    rank_pids = wait_for_ranks(running) if backend == "mpi" else []
    running.wait_rows(run_dir, done_before + (3 if done_before == 0 else 1))
    sig = getattr(signal, signame)
    if backend == "mpi":
        for pid in rank_pids:
            os.kill(pid, sig)
    else:
        running.send(sig, group=True)
    done = running.wait()
    context = f"{signame} to the {backend} run:\n{done.output}"
    finished = f"reached {LONG_GENERATIONS} generations" in done.stdout
    assert not finished, f"the run ended before the signal came:\n{context}"
    assert done.returncode == EXIT_PREEMPTED, context
    if done_before:
        assert f"resuming {run_dir} from generation {done_before}" in done.stdout, context
    found = re.search(rf"hpcne: stopped by {signame} after generation (\d+); checkpoint written\. ", done.stdout)
    assert found, context
    assert f"Run the same command (or `hpcne resume {run_dir}`) to continue. Exit status 75." in done.stdout, context
    assert "Traceback" not in done.stderr, context
    generation = int(found.group(1))
    assert done_before < generation < LONG_GENERATIONS, context
    assert (run_dir / "checkpoints" / f"ckpt-{generation:08d}.h5").exists(), context
    record = load_run(run_dir)
    assert record.checkpoint_generation == generation, context
    assert record.table["generation"].tolist() == list(range(1, generation + 1)), context
    if done_before == 0:  # a SWMR reader saw the results file grow while the run wrote it
        assert len([rows for rows in running.seen_rows if rows > 0]) >= 2, running.seen_rows
    return generation


@pytest.mark.slow
def test_every_stop_signal_checkpoints_and_the_resumed_run_is_exact(
    cli: Cli, baseline_long: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    generation = 0
    for signame, backend in STOPS:
        generation = stop_once(cli, run_dir, signame, backend, generation)
    done = cli.run(["resume", run_dir])
    assert done.returncode == 0, done.output
    assert f"resuming {run_dir} from generation {generation}" in done.stdout, done.output
    assert_same_run(run_dir, baseline_long, generations=LONG_GENERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_ctrl_c_twice_stops_at_once_and_keeps_the_last_checkpoint(cli: Cli, tmp_path: Path, backend: str) -> None:
    run_dir = tmp_path / "run"
    slow = ["--env", "Pendulum-v1", "--popsize", "200", "--episode-length", "200"]  # about a second per generation
    workers = ["--workers", "1" if backend == "serial" else "2"]
    running = cli.start(["train", *TINY, *slow, *workers, "--run-dir", run_dir])
    running.wait_rows(run_dir, 1)
    running.send(signal.SIGINT, group=True)
    time.sleep(0.1)
    running.send(signal.SIGINT, group=True)
    started = time.monotonic()
    done = running.wait()
    assert done.returncode == 130, done.output
    assert time.monotonic() - started < 10, done.output
    assert "hpcne: interrupted" in done.stderr and "Traceback" not in done.stderr, done.output
    assert "checkpoint written" not in done.stdout, done.output
    record = load_run(run_dir)
    rows = record.table["generation"].tolist()
    assert rows == list(range(1, len(rows) + 1)), done.output
    # the second Ctrl-C may land between a generation's row and its checkpoint: a resume drops that row
    assert rows[-1] - 1 <= record.checkpoint_generation <= rows[-1], done.output
    assert not running.process_tree()[1:], "pool workers outlived the run"


def test_ctrl_c_after_the_stop_checkpoint_is_written_keeps_exit_status_75(
    in_process: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Once "checkpoint written … Exit status 75" is printed, a second Ctrl-C must not turn it into 130."""
    from hpcne.run import Trainer

    checkpoint, say = Trainer._checkpoint, Trainer._say

    def checkpoint_then_ctrl_c(self: Trainer, elapsed: float) -> None:
        checkpoint(self, elapsed)
        if self.generation == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the first: stop after the next generation

    def say_then_ctrl_c(self: Trainer, text: str) -> None:
        say(self, text)
        if f"Exit status {EXIT_PREEMPTED}" in text:
            os.kill(os.getpid(), signal.SIGINT)  # the second, once the run has said it is preempted

    monkeypatch.setattr(Trainer, "_checkpoint", checkpoint_then_ctrl_c)
    monkeypatch.setattr(Trainer, "_say", say_then_ctrl_c)
    status, out, err = in_process(["train", *TINY, "--workers", "1", "--run-dir", tmp_path / "run"])
    assert status == EXIT_PREEMPTED, out + err
    assert "stopped by SIGINT after generation 3; checkpoint written" in out, out + err
    assert "interrupted" not in err


@pytest.mark.slow
def test_ctrl_c_twice_on_a_worker_rank_alone_stops_the_job_with_a_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """Only rank 0 decides to stop at once; a worker's second SIGINT is one more stop request (once: a hang)."""
    run_dir = tmp_path / "run"
    running = cli.start(["train", *TINY_LONG, "--run-dir", run_dir], ranks=2)
    ranks = wait_for_ranks(running)
    running.wait_rows(run_dir, 2)
    worker = next(pid for pid in ranks if b"PMI_RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes())
    os.kill(worker, signal.SIGINT)
    time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker, signal.SIGINT)
    done = running.wait()
    assert done.returncode == EXIT_PREEMPTED, done.output
    assert "stopped by a stop request on another rank" in done.stdout, done.output
