"""Exact restart: a run killed with SIGKILL at a random generation and resumed with the same command ends
bit-identical to an uninterrupted run, serially and under MPI."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from run_helpers import GENERATIONS, TINY, TINY_OBS_NORM, Cli, Running, assert_same_run, copy_run

from hpcne.config import RunConfig
from hpcne.io.checkpoint import CheckpointManager
from hpcne.run import Trainer, build_problem


def kill_point(name: str) -> int:
    """How many result rows to wait for before SIGKILL: reproducible but not hand-picked. 0 means as soon
    as the results file exists, before the first checkpoint."""
    return random.Random(f"hpcne-{name}").randint(0, GENERATIONS - 5)  # leave time to kill it


def kill_after_rows(running: Running, run_dir: Path, rows: int) -> None:
    """SIGKILL the run's whole process group once its results file holds ``rows`` rows."""
    if rows == 0:
        while not (run_dir / "results.h5").exists():
            assert running.alive(), running.done().output
            time.sleep(0.01)
    else:
        running.wait_rows(run_dir, rows)
    running.kill_group()
    done = running.wait()
    assert done.returncode == -signal.SIGKILL, f"the run was not killed mid-way:\n{done.output}"


def check_resume(cli: Cli, args: list, run_dir: Path, baseline: Path, *, ranks: int = 0) -> None:
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*.h5")) if (run_dir / "checkpoints").exists() else []
    done = cli.run(args, ranks=ranks)
    assert done.returncode == 0, done.output
    if checkpoints:
        generation = int(checkpoints[-1].stem.split("-")[1])
        assert f"resuming {run_dir} from generation {generation}" in done.stdout, done.output
    else:  # killed before the first checkpoint: the run starts again from scratch
        assert "resuming" not in done.stdout, done.output
    assert "done (reached" in done.stdout, done.output
    assert_same_run(run_dir, baseline)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(cli: Cli, baseline_obs_norm: Path, tmp_path: Path) -> None:
    """Serial, with observation normalization (its statistics are part of the exact state)."""
    run_dir = tmp_path / "run"
    args = ["train", *TINY_OBS_NORM, "--workers", "1", "--run-dir", run_dir]
    kill_after_rows(cli.start(args), run_dir, kill_point("serial"))
    check_resume(cli, args, run_dir, baseline_obs_norm)


@pytest.mark.slow
def test_sigkill_under_mpi_then_resume_under_mpi_matches_the_serial_run(
    cli: Cli, baseline: Path, tmp_path: Path
) -> None:
    """Observation normalization off: then the results do not depend on the layout."""
    run_dir = tmp_path / "run"
    args = ["train", *TINY, "--run-dir", run_dir]
    kill_after_rows(cli.start(args, ranks=2), run_dir, kill_point("mpi"))
    check_resume(cli, args, run_dir, baseline, ranks=2)


def test_resume_restores_the_best_solution_of_the_checkpoint(baseline_obs_norm: Path, tmp_path: Path) -> None:
    """A best found in generations after the checkpoint is discarded with them (else /best could show a
    solution, or statistics, from a generation that the results table no longer holds)."""
    run_dir = copy_run(baseline_obs_norm, tmp_path / "run")
    *_, kept, _, _ = sorted((run_dir / "checkpoints").glob("ckpt-*.h5"))
    for newer in sorted((run_dir / "checkpoints").glob("ckpt-*.h5")):
        if newer.name > kept.name:
            newer.unlink()
    with h5py.File(run_dir / "results.h5", "r+") as f:  # as if a better solution came after the checkpoint
        f["best/values"][...] = 0.0
        f["best/generation"][()] = GENERATIONS
    checkpoint = CheckpointManager(run_dir / "checkpoints").load_latest()
    assert checkpoint is not None and checkpoint.generation < GENERATIONS
    config = RunConfig.from_json(checkpoint.attrs["config"])
    Trainer(config, build_problem(config), run_dir).results.close()
    record = checkpoint.state["trainer"]["best"]
    assert set(record) == {"values", "eval", "generation", "obs_mean", "obs_stdev", "obs_count"}
    assert record["generation"] <= checkpoint.generation
    with h5py.File(run_dir / "results.h5", "r") as f:
        for name, value in record.items():
            assert np.array_equal(np.ravel(f["best"][name][()]), np.ravel(value)), f"/best/{name} not restored"
        assert len(f["log/generation"]) == checkpoint.generation
