"""Results do not depend on the layout: serial, pool, MPI ranks and subbatch splits agree exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from layouts import DISTRIBUTED_RUNS, RUNS, SPLITS, run
from parallel_helpers import json_lines, population, run_script, sum_problem

from hpcne.parallel import use_backend

Key = tuple[str, bool, int]


@pytest.fixture(scope="module")
def serial() -> dict[Key, dict[str, Any]]:
    """The reference: every run of layouts.RUNS in this process."""
    use_backend("serial")
    try:
        return {(split, obs, rep): run(split, obs) for split, obs, rep in RUNS}
    finally:
        use_backend(None)


def assert_same_run(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Bit-identical fitnesses, searcher trajectory, statistics and counters."""
    for key in ("fitness", "center", "stdev", "stats", "counters"):
        assert got[key] == want[key], f"{key} differs for {got['split']}, obs_norm={got['obs_norm']}"


def assert_same_up_to_stat_rounding(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Observation statistics summed in another order: equal counters, stats equal to float64 rounding."""
    assert got["counters"] == want["counters"]
    assert all(isinstance(n, int) for n in got["counters"])
    np.testing.assert_allclose(got["stats"], want["stats"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("num_actors", [1, 2])
@pytest.mark.parametrize("split", SPLITS)
def test_fitnesses_of_a_population_do_not_depend_on_the_layout(num_actors: int, split: str) -> None:
    reference = sum_problem().evaluate_values(population())
    use_backend("pool")  # also for one worker (num_actors=1 alone means in-process)
    problem = sum_problem(num_actors=num_actors, **SPLITS[split])
    try:
        fitness = problem.evaluate_values(population())
    finally:
        problem.kill_actors()
    assert fitness.dtype == np.float64
    np.testing.assert_array_equal(fitness, reference)


@pytest.mark.parametrize("num_actors", [1, 2])
def test_pool_runs_match_serial_runs(serial: dict[Key, dict[str, Any]], num_actors: int) -> None:
    use_backend("pool")
    for split, obs_norm, repetition in RUNS:
        got = run(split, obs_norm, num_actors)
        assert (got["runtime"], got["workers"]) == ("PoolRuntime", num_actors)
        want = serial[split, obs_norm, repetition]
        if obs_norm:
            assert_same_up_to_stat_rounding(got, want)
        else:
            assert_same_run(got, want)


def test_with_observation_normalization_a_layout_repeats_exactly(serial: dict[Key, dict[str, Any]]) -> None:
    assert_same_run(serial["static", True, 1], serial["static", True, 0])
    assert_same_run(run("subbatch_size=3", True, 2), run("subbatch_size=3", True, 2))


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_mpi_runs_match_serial_runs(serial: dict[Key, dict[str, Any]], ranks: int) -> None:
    # One rank: a plain process with the MPI backend forced; more: under mpiexec.
    env = {"HPCNE_BACKEND": "mpi"} if ranks == 1 else None
    done = run_script("layouts.py", ranks=None if ranks == 1 else ranks, env=env)
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    results = {(r["split"], r["obs_norm"], r["repetition"]): r for r in lines if not r["distributed"]}
    distributed = {(r["split"], r["obs_norm"], 0): r for r in lines if r["distributed"]}
    assert sorted(results) == sorted(serial)
    assert sorted(distributed) == sorted((split, obs_norm, 0) for split, obs_norm in DISTRIBUTED_RUNS)
    for key, got in [*results.items(), *distributed.items()]:
        assert (got["runtime"], got["workers"]) == ("MPIRuntime", ranks)
        if key[1]:
            assert_same_up_to_stat_rounding(got, serial[key])
        else:
            assert_same_run(got, serial[key])
    assert_same_run(results["static", True, 1], results["static", True, 0])


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_distributed_runs_match_centralized_runs(serial: dict[Key, dict[str, Any]], backend: str) -> None:
    use_backend(backend)
    for split, obs_norm in DISTRIBUTED_RUNS:
        got = run(split, obs_norm, 2 if backend == "pool" else None, distributed=True)
        want = serial[split, obs_norm, 0]
        if obs_norm and backend == "pool":
            assert_same_up_to_stat_rounding(got, want)
        else:
            assert_same_run(got, want)
