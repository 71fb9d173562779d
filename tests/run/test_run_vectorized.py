"""``hpcne train --vectorized``: VecGymNE from the command line, exact restart, the same run on every layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from run_helpers import GENERATIONS, TINY, Cli, assert_same_run

from hpcne.config import ConfigError, RunConfig
from hpcne.neuroevolution import VecGymNE
from hpcne.run import build_problem

VECTORIZED = [*TINY, "--vectorized", "--max-num-envs", "8", "--obs-norm"]
"""The tiny run on CartPole-v1's vector entry point (waves of 8), with observation normalization."""


@pytest.fixture(scope="module")
def vectorized_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted serial run of VECTORIZED."""
    workdir = tmp_path_factory.mktemp("vectorized")
    done = Cli(workdir).run(["train", *VECTORIZED, "--workers", "1", "--run-dir", workdir / "run"])
    assert done.returncode == 0, done.output
    return workdir / "run"


def test_the_flag_and_the_config_key_choose_vecgymne(tmp_path: Path) -> None:
    config = RunConfig.from_dict({"vectorized": True, "max_num_envs": 16, "vector_schedule": "refill"})
    problem = build_problem(config)
    assert isinstance(problem, VecGymNE) and problem.max_num_envs == 16 and problem.schedule == "refill"
    assert type(build_problem(RunConfig())).__name__ == "GymNE"
    with pytest.raises(ConfigError, match="vectorized must be true or false"):
        RunConfig.from_dict({"vectorized": "yes"})
    with pytest.raises(ConfigError, match="vector_schedule must be waves or refill"):
        RunConfig.from_dict({"vectorized": True, "vector_schedule": "fast"})
    with pytest.raises(ConfigError, match="max_num_envs must be a positive integer"):
        RunConfig.from_dict({"vectorized": True, "max_num_envs": 0})


def test_a_resumed_run_ends_bit_identical(in_process: Any, vectorized_baseline: Path, tmp_path: Path) -> None:
    """Stop after 9 generations (a checkpoint each), resume to the end: the uninterrupted run, bit for bit."""
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *VECTORIZED, "--workers", "1", "--generations", "9", "--run-dir", run_dir])
    assert status == 0, err
    status, out, err = in_process(["resume", run_dir, "--generations", str(GENERATIONS)])
    assert status == 0, err
    assert f"resuming {run_dir} from generation 9" in out, out
    assert_same_run(run_dir, vectorized_baseline)


@pytest.mark.slow
def test_pool_and_mpi_runs_match_the_serial_run(cli: Cli, vectorized_baseline: Path, tmp_path: Path) -> None:
    """Observation statistics merged from several workers may differ in the last bits, so without them."""
    flags = [*VECTORIZED, "--no-obs-norm"]
    runs = {"serial": ({"--workers": "1"}, 0), "pool": ({"--workers": "2"}, 0), "mpi": ({}, 3)}
    for name, (options, ranks) in runs.items():
        extra = [item for pair in options.items() for item in pair]
        done = cli.run(["train", *flags, *extra, "--run-dir", tmp_path / name], ranks=ranks)
        assert done.returncode == 0, done.output
    assert_same_run(tmp_path / "pool", tmp_path / "serial")
    assert_same_run(tmp_path / "mpi", tmp_path / "serial")
