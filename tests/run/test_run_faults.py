"""Faults met by a training run: NaN fitnesses, a second writer, damaged or foreign files, bad numbers.

Each case ends with a clear message (or is handled as documented in docs/TRAINING.md), never a hang,
a traceback or silently wrong results.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch
from run_helpers import LONG_GENERATIONS, TINY, TINY_LONG, load_run

from hpcne.io.lock import LOCK_FILENAME, RunDirLock, RunDirLocked
from hpcne.neuroevolution import GymNE
from hpcne.parallel.pool import cpu_count


class NaNRewardCartPole(gym.Wrapper):
    """CartPole whose reward at step 3 is NaN when the policy pushes right: some solutions get NaN fitness."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def reset(self, **kwargs: Any) -> Any:
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        self.steps += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, math.nan if self.steps == 3 and action == 1 else reward, terminated, truncated, info


@pytest.fixture(scope="module")
def nan_env() -> str:
    name = "hpcne-test/NaNRewardCartPole-v0"
    if name not in gym.registry:
        gym.register(name, entry_point=NaNRewardCartPole)
    return name


def test_nan_fitness_is_ranked_worst_counted_and_left_out_of_the_log(in_process, nan_env: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *TINY, "--generations", "3", "--env", nan_env, "--run-dir", run_dir])
    assert status == 0, out + err
    assert "solutions have a NaN fitness (a NaN reward or a diverged simulation?); they are ranked worst" in err
    assert err.count("NaN fitness") == 1, err  # warned once, then counted
    assert "solutions had a NaN fitness (ranked worst)" in out
    table = load_run(run_dir).table
    for column in ("mean_eval", "median_eval", "best_eval", "pop_best_eval", "worst_eval"):
        assert np.isfinite(table[column]).all(), table


def test_nan_policy_error_ends_the_run_before_the_generation_is_checkpointed(
    in_process, nan_env: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ["train", *TINY, "--generations", "3", "--env", nan_env, "--nan-policy", "error", "--run-dir", run_dir]
    status, out, err = in_process(args)
    assert status == 1, out + err
    assert err.startswith("hpcne: error: generation 1: "), err
    assert "nan_policy 'error' ends the run here, before this generation is checkpointed (no checkpoint yet" in err
    assert not list((run_dir / "checkpoints").glob("ckpt-*.h5"))


# ---------------------------------------------------------------------------- the run directory's lock
def test_a_second_run_on_a_busy_run_directory_is_refused_naming_the_holder(in_process, cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = cli.start(["train", *TINY_LONG, "--workers", "1", "--run-dir", run_dir])
    first.wait_rows(run_dir, 1)
    status, out, err = in_process(["train", *TINY_LONG, "--workers", "1", "--run-dir", run_dir])
    assert status == 1, out + err
    assert re.match(
        rf"hpcne: error: {re.escape(str(run_dir))} is in use by hpcne on host {socket.gethostname()}, "
        rf"pid {first.pid} \(since .*\): two runs writing one directory would mix",
        err,
    ), err
    first.send(signal.SIGTERM)
    assert first.wait().returncode == 75
    status, out, err = in_process(["resume", run_dir, "--generations", str(LONG_GENERATIONS)])
    assert status == 0, out + err  # the lock went with its holder


def test_a_lock_file_left_by_a_dead_run_does_not_block(in_process, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILENAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid()}))
    status, out, err = in_process(["train", *TINY, "--generations", "2", "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err


def test_a_lock_kept_for_a_dead_holder_is_reported_as_stale(tmp_path: Path) -> None:
    """A shared filesystem may keep a dead client's lock for a while: the message says so."""
    path = tmp_path / LOCK_FILENAME
    holder = json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "started": "then"})
    keeper = subprocess.Popen(
        [sys.executable, "-c", KEEP_LOCK, str(path), holder], stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    try:
        assert keeper.stdout is not None and keeper.stdout.readline() == "locked\n"
        with pytest.raises(RunDirLocked, match=r"no longer runs on this host: the lock is stale"):
            RunDirLock(tmp_path).acquire()
    finally:
        keeper.kill()
        keeper.wait()
    RunDirLock(tmp_path).acquire()  # gone with its keeper


KEEP_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, sys.argv[2].encode())
print("locked", flush=True)
time.sleep(600)
"""


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------------------- damaged or foreign results files
@pytest.fixture
def finished_run(in_process, tmp_path: Path) -> Path:
    """A run of 4 generations, checkpointed at each."""
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *TINY, "--generations", "4", "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err
    return run_dir


def truncate_results(run_dir: Path) -> None:
    path = run_dir / "results.h5"
    os.truncate(path, path.stat().st_size // 2)


def test_report_of_a_truncated_results_file_is_an_error_not_a_hang(cli, finished_run: Path) -> None:
    """A SWMR reader retried the damaged metadata with a doubling sleep: report and resume hung for hours."""
    truncate_results(finished_run)
    done = cli.run(["report", finished_run], timeout=60)
    assert done.returncode == 1, done.output
    assert re.fullmatch(
        rf"hpcne: error: {re.escape(str(finished_run))}/results.h5 (is not a readable results file|cannot be read "
        r"as an HDF5 file) \(.*\)\.\n",
        done.stderr,
    ), done.output


def test_report_does_not_read_data_kept_outside_the_results_file(in_process, finished_run: Path) -> None:
    secret = finished_run.parent / "secret.txt"
    secret.write_bytes(b"private" * 100)
    with h5py.File(finished_run / "results.h5", "r+") as file:
        del file["log/mean_eval"]
        file["log"].create_dataset("mean_eval", shape=(4,), dtype="f8", external=[(str(secret), 0, 32)])
    status, out, err = in_process(["report", finished_run, "--csv", finished_run.parent / "out.csv"])
    assert status == 1, out + err
    assert "'/log/mean_eval' keeps its data outside the file" in err
    assert not (finished_run.parent / "out.csv").exists()


def test_resume_sets_a_damaged_results_file_aside_and_goes_on(in_process, finished_run: Path) -> None:
    truncate_results(finished_run)
    status, out, err = in_process(["resume", finished_run, "--generations", "6"])
    assert status == 0, out + err
    aside = list(finished_run.glob("results.h5.damaged-*"))
    assert len(aside) == 1, err
    assert "results.h5 is damaged (" in err and f"It was moved to {aside[0].name}, and a new results.h5" in err
    assert "logs no generation, but the run resumes from generation 4: the log goes on from generation 5" in err
    assert load_run(finished_run).table["generation"].tolist() == [5, 6]


def test_resume_without_the_results_file_says_which_generations_the_log_lacks(in_process, finished_run: Path) -> None:
    """Once a deleted results file silently restarted the log, and report counted the rows as generations."""
    (finished_run / "results.h5").unlink()
    status, out, err = in_process(["resume", finished_run, "--generations", "5"])
    assert status == 0, out + err
    assert "without generations 1-4 (a results file deleted, damaged or written by another run)" in err


# ---------------------------------------------------------------------------- numbers and resources
@pytest.mark.parametrize(
    ("toml", "flags", "expected"),
    [
        (b"target_reward = nan\n", [], "target_reward must be a finite number or unset; got nan."),
        (None, ["--decrease-rewards-by", "inf"], "decrease_rewards_by must be a finite number or unset; got inf."),
        (b"action_noise_stdev = inf\n", [], "action_noise_stdev must be a finite number or unset; got inf."),
        (b"action_noise_stdev = -0.1\n", [], "action_noise_stdev must be >= 0; got -0.1."),
        (b"alive_bonus_schedule = [nan, 1]\n", [], "alive_bonus_schedule must be [t, bonus] or [t0, t1, bonus] of"),
        (None, ["--opt", "center_learning_rate=inf"], "algo option center_learning_rate must hold finite numbers"),
        (None, ["--opt", "stdev_init=inf"], "algo option stdev_init must hold finite numbers; got inf in inf."),
        (None, ["--opt", "radius_init=inf"], "algo option radius_init must hold finite numbers; got inf in inf."),
        (None, ["--opt", "stdev_max_change=-1"], "algo option stdev_max_change must be positive; got -1."),
        (b"algo_options = 5\n", [], "algo_options must be a table of keyword arguments ([algo_options] in TOML)"),
        (b"\x89HDF\r\n\x1a\n\x00\xff\xfe", [], "Config file {config} is not a text file (TOML is UTF-8 text)"),
        (None, ["--popsize", "1000000000000"], "popsize 1000000000000 × 10 parameters needs about"),
    ],
)
def test_numbers_that_make_no_sense_are_refused(
    in_process, tmp_path: Path, toml: bytes | None, flags: list[str], expected: str
) -> None:
    args = ["train"]
    config = tmp_path / "config.toml"
    if toml is not None:
        config.write_bytes(toml)
        args.append(config)
    network = ["--network", "Linear(obs_length, act_length)"]  # 10 parameters on CartPole
    common = ["--generations", "1", "--episode-length", "10", "--workers", "1", *network, "--run-dir", tmp_path / "r"]
    status, out, err = in_process([*args, *common, *flags])
    assert status == 2, out + err
    assert err.startswith("hpcne: error: "), err
    assert expected.format(config=config) in err, err
    assert "Traceback" not in err


def test_more_workers_than_cpus_are_capped_with_a_message(in_process, tmp_path: Path) -> None:
    """workers = 100000 once forked 100000 processes (load 174, no output for minutes)."""
    cpus = cpu_count()
    args = ["train", *TINY, "--generations", "1", "--workers", "100000", "--run-dir", tmp_path / "r"]
    status, out, err = in_process(args)
    assert status == 0, out + err
    assert f"hpcne: warning: 100000 pool workers were asked for, but this process may use {cpus} CPUs: starting" in err


@pytest.mark.parametrize("bounds", [(math.nan, math.nan), (-math.inf, 1.0)])
def test_initial_bounds_must_be_finite(bounds: tuple[float, float]) -> None:
    problem = GymNE("CartPole-v1", "Linear(obs_length, act_length)", initial_bounds=bounds, num_actors=None)
    with pytest.raises(ValueError, match=r"initial_bounds must be finite numbers; got \("):
        _ = problem.initial_lower_bounds


# ---------------------------------------------------------------------------- a full disk
class _FullDisk:
    """``os.statvfs`` of a disk with ``free`` bytes left."""

    def __init__(self, free: int) -> None:
        self.f_bavail, self.f_frsize = free // 4096, 4096


@pytest.mark.parametrize("file", ["results.h5", "checkpoints/ckpt-00000001.h5"])
def test_a_full_disk_ends_the_run_with_one_line_naming_the_file(
    in_process, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file: str
) -> None:
    """On a 2 MB tmpfs HDF5 segfaulted (7 in 10 runs) or raised RuntimeError; free space is checked first."""
    from hpcne.io import validate

    full = (tmp_path / "run" / file).parent
    monkeypatch.setattr(validate.os, "statvfs", lambda path: _FullDisk(100_000 if Path(path) == full else 10**12))
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *TINY, "--generations", "2", "--workers", "1", "--run-dir", run_dir])
    assert status == 1, out + err
    assert re.fullmatch(
        rf"hpcne: error: Not enough free space to write {re.escape(str(run_dir / file))}: 0\.\d MiB free, about "
        r"1\.0 MiB needed\. Free some space, then resume the run \(what was written before is kept\)\.\n",
        err,
    ), err


def test_a_read_only_run_directory_is_one_line_naming_the_file(in_process, monkeypatch, tmp_path: Path) -> None:
    """Simulated (tests may run as root, whom permissions do not stop): the lock file cannot be created."""
    from hpcne.io import lock

    run_dir = tmp_path / "run"
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", read_only)
    status, out, err = in_process(["train", *TINY, "--generations", "1", "--workers", "1", "--run-dir", run_dir])
    assert status == 1, out + err
    assert err == f"hpcne: error: [Errno 13] Permission denied: '{run_dir / LOCK_FILENAME}'\n"


class NaNObservationEnv(gym.Env):
    """A minimal environment whose second observation is NaN (not a CartPole wrapper, which GymNE may bypass)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.steps = 0
        return np.zeros(4, np.float32), {}

    def step(self, action: Any) -> Any:
        self.steps += 1
        obs = np.full(4, np.nan if self.steps == 2 else 0.5, np.float32)
        return obs, 1.0, self.steps >= 10, False, {}


def test_a_non_finite_observation_is_blamed_on_the_environment() -> None:
    """It was blamed on "the network and its parameters"."""
    problem = GymNE(
        NaNObservationEnv, "Linear(obs_length, act_length)", observation_normalization=False, num_actors=None
    )
    with pytest.raises(FloatingPointError, match=r"the environment gave it the non-finite observation \[nan, nan"):
        problem.evaluate_values(torch.ones(1, problem.solution_length))
