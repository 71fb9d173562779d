"""Which backend a problem gets, how to force one, and what it says at start-up."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch
from parallel_helpers import sum_problem

from hpcne.core import Problem
from hpcne.parallel import SerialRuntime, launch, runtime, signals, use_backend
from hpcne.parallel.launch import launcher_world_size, unread_bytes, wait_until_output_is_read
from hpcne.parallel.pool import PoolRuntime, cpu_count


@pytest.mark.parametrize(
    ("num_actors", "kind", "workers"),
    [
        (None, SerialRuntime, 1),
        (1, SerialRuntime, 1),
        (0, SerialRuntime, 1),
        (2, PoolRuntime, 2),
        ("max", PoolRuntime, cpu_count()),
    ],
)
def test_num_actors_chooses_serial_or_pool(num_actors: object, kind: type, workers: int) -> None:
    problem = sum_problem(num_actors=num_actors)
    try:
        assert isinstance(problem.runtime, kind)
        assert problem.runtime.num_workers == workers
    finally:
        problem.kill_actors()


def test_environment_variable_forces_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCNE_BACKEND", "serial")
    problem = sum_problem(num_actors=2)
    assert isinstance(problem.runtime, SerialRuntime)
    monkeypatch.setenv("HPCNE_BACKEND", "pool")
    problem = sum_problem(num_actors=None)
    try:
        assert isinstance(problem.runtime, PoolRuntime)
        assert problem.runtime.num_workers == 1
    finally:
        problem.kill_actors()


def test_use_backend_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCNE_BACKEND", "pool")
    use_backend("serial")
    assert isinstance(sum_problem(num_actors=2).runtime, SerialRuntime)


def test_bad_backend_names_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"Unknown backend 'ray'; choose one of serial, pool, mpi\."):
        use_backend("ray")
    monkeypatch.setenv("HPCNE_BACKEND", "ray")
    with pytest.raises(ValueError, match=r"HPCNE_BACKEND='ray' is not a backend; choose one of serial, pool, mpi"):
        _ = sum_problem().runtime


def test_a_local_backend_from_the_environment_under_a_multi_rank_launcher_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "launcher_world_size", lambda: 3)
    monkeypatch.setenv("HPCNE_BACKEND", "pool")
    with pytest.raises(ValueError, match="HPCNE_BACKEND='pool', but this process is one of 3 MPI ranks"):
        _ = sum_problem().runtime
    use_backend("serial")  # the program's explicit choice for this process (e.g. rank 0 alone)
    assert isinstance(sum_problem().runtime, SerialRuntime)


@pytest.mark.parametrize("variable", ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"])
def test_launcher_size_comes_from_the_launchers_variables(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    assert launcher_world_size() == 1
    monkeypatch.setenv(variable, "4")
    assert launcher_world_size() == 4


def test_a_failing_rank_waits_until_its_output_is_read_before_it_aborts() -> None:
    """The reader starts late (as a launcher that is not scheduled): the wait ends only once it read."""
    read, write = os.pipe()
    os.write(write, b"hpcne: rank 2 on host h failed: ...\n")
    reader = threading.Timer(0.2, os.read, (read, 4096))
    reader.start()
    wait_until_output_is_read((write,), timeout=600)  # the timeout is only a bound: never reached here
    assert unread_bytes(write) == 0
    reader.join()
    os.write(write, b"nobody reads this")
    wait_until_output_is_read((write,), timeout=0.05)  # a launcher that stopped reading: give up
    assert unread_bytes(write) == len(b"nobody reads this")
    os.close(read)
    os.close(write)


def test_only_pipes_are_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file keeps what was written: no wait, though FIONREAD counts its bytes after the position."""

    def no_waiting(seconds: float) -> None:
        raise AssertionError("waited for a file or a closed descriptor")

    monkeypatch.setattr(launch.time, "sleep", no_waiting)
    with open(tmp_path / "log", "w+b") as file:
        file.write(b"x")
        file.flush()
        file.seek(0)
        assert unread_bytes(file.fileno()) == 1
        wait_until_output_is_read((file.fileno(), 12345), timeout=600)  # 12345: not open


def test_start_up_line_names_backend_and_workers(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("HPCNE_QUIET", raising=False)
    problem = sum_problem(num_actors=2)
    try:
        problem.evaluate_values(torch.zeros(4, 5))
    finally:
        problem.kill_actors()
    assert "hpcne: evaluating with process pool, 2 workers on " in capfd.readouterr().err
    _ = sum_problem().runtime
    assert "hpcne: evaluating with serial, 1 worker (this process) on " in capfd.readouterr().err
    monkeypatch.setenv("HPCNE_QUIET", "1")
    _ = sum_problem().runtime
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("num_actors", [None, 2])
def test_a_stop_request_shows_on_the_runtime_after_the_round(num_actors: int | None) -> None:
    problem = sum_problem(num_actors=num_actors)
    try:
        problem.evaluate_values(torch.zeros(3, 5))
        assert not problem.runtime.stop_requested
        signals.request_stop()
        problem.evaluate_values(torch.zeros(3, 5))
        assert problem.runtime.stop_requested
    finally:
        signals.clear_stop()
        problem.kill_actors()


def test_pool_workers_compute_on_one_thread_in_a_session_of_their_own() -> None:
    session = os.getsid(0)

    def fitness(_: torch.Tensor) -> float:
        return 10.0 * torch.get_num_threads() + (os.getsid(0) != session)

    problem = Problem("max", fitness, solution_length=1, seed=0, num_actors=2)
    try:
        assert problem.evaluate_values(torch.zeros(4, 1)).tolist() == [11.0] * 4
    finally:
        problem.kill_actors()


def sleepy_problem(**kwargs: object) -> Problem:
    """Each solution takes 20 ms of evaluation, so the busiest worker's time is known."""

    def fitness(x: torch.Tensor) -> float:
        time.sleep(0.02)
        return float(x.sum())

    return Problem("min", fitness, solution_length=3, seed=0, **kwargs)


@pytest.mark.parametrize(("num_actors", "busiest"), [(None, 8), (2, 4)])
def test_communication_time_is_evaluation_time_beyond_the_busiest_worker(num_actors: int | None, busiest: int) -> None:
    problem = sleepy_problem(num_actors=num_actors)
    try:
        _ = problem.runtime  # start the workers outside the timed evaluation
        problem.evaluate_values(torch.zeros(8, 3))
        compute = problem.runtime.compute_seconds
        assert busiest * 0.02 <= compute < busiest * 0.02 + 0.5
        assert problem.eval_seconds >= compute
        assert problem.comm_seconds == pytest.approx(problem.eval_seconds - compute)
        assert problem.comm_seconds < 0.5
    finally:
        problem.kill_actors()
