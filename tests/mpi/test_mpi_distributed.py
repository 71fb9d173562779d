"""The distributed mode in-process on every rank: trajectories, failures and stop requests."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from conftest import spmd
from test_mpi_runtime import SPLITS, pendulum, serial

from hpcne.algorithms import CEM, PGPE, SNES, GaussianSearchAlgorithm
from hpcne.core import Problem
from hpcne.neuroevolution import NEProblem
from hpcne.parallel import WorkerError, signals
from hpcne.sampling import NOISE_TABLE_ENV, GaussianSample, NoiseStream

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

SEARCHERS = {
    "pgpe": lambda p, d: PGPE(
        p, popsize=10, center_learning_rate=0.05, stdev_learning_rate=0.1, radius_init=2.0, distributed=d
    ),
    "snes": lambda p, d: SNES(p, stdev_init=0.3, popsize=7, distributed=d),
    "cem": lambda p, d: CEM(p, popsize=9, parenthood_ratio=0.4, stdev_init=0.3, distributed=d),
    "pgpe-adaptive": lambda p, d: PGPE(  # two batches (rounds) per generation, one update
        p,
        popsize=6,
        center_learning_rate=0.05,
        stdev_learning_rate=0.1,
        radius_init=2.0,
        num_interactions=250,
        popsize_max=18,
        distributed=d,
    ),
}


def trajectory(searcher: GaussianSearchAlgorithm, generations: int = 3) -> list[Any]:
    out: list[Any] = []
    for _ in range(generations):
        searcher.step()
        out += [searcher.population.evals[:, 0].tolist(), searcher.status["center"].tolist()]
        out += [searcher.status["stdev"].tolist(), searcher.status["pop_best"].values.tolist()]
    return out


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("algo", SEARCHERS)
def test_distributed_runs_match_the_serial_centralized_run(comm: Any, algo: str, split: str) -> None:
    make = SEARCHERS[algo]
    reference = serial(lambda: trajectory(make(pendulum(**SPLITS[split]), False))) if comm.rank == 0 else None
    problem = pendulum(**SPLITS[split])
    got = spmd(problem, lambda p: trajectory(make(p, True)))
    if comm.rank == 0:
        assert got == reference
        assert algo != "pgpe-adaptive" or {len(generation) for generation in got[0::4]} == {12}


def sample_of(problem: Problem, n: int = 12) -> tuple[GaussianSample, int]:
    d = problem.solution_length
    stream = NoiseStream(problem.seed, problem._eval_round, d, symmetric=False)
    return GaussianSample(stream, np.zeros(d, np.float32), np.ones(d, np.float32)), n


@pytest.mark.parametrize("split", ["static", "subbatch_size=3"])
def test_a_failure_on_a_rank_reaches_rank_0_and_the_runtime_survives(comm: Any, split: str) -> None:
    failed: list[bool] = []

    def score(net: torch.nn.Module) -> float:
        if comm.rank == comm.size - 1 and not failed:  # the first solution it gets, then never again
            failed.append(True)
            raise ArithmeticError("the last rank fails (raised on purpose)")
        return float(next(net.parameters()).sum())

    problem = NEProblem("max", "Linear(2, 1)", score, seed=1, **SPLITS[split])

    def body(p: Problem) -> np.ndarray:
        with pytest.raises(WorkerError, match=r"(?s)rank \d on host .*raised on purpose") as caught:
            p.evaluate_sampled(*sample_of(p))
        assert caught.value.worker == comm.size - 1
        return p.evaluate_sampled(*sample_of(p))

    fitness = spmd(problem, body)
    if comm.rank == 0:
        fresh = NEProblem("max", "Linear(2, 1)", score, seed=1)  # the failed round did not count
        np.testing.assert_array_equal(fitness, serial(lambda: fresh.evaluate_sampled(*sample_of(fresh))))


def test_a_stop_request_on_any_rank_reaches_rank_0_in_distributed_mode(comm: Any) -> None:
    if comm.rank == comm.size - 1:
        signals.request_stop()
    problem = NEProblem("max", "Linear(2, 1)", lambda net: 0.0, seed=1)

    def body(p: Problem) -> bool:
        p.evaluate_sampled(*sample_of(p, 5))
        return p.runtime.stop_requested

    stopped = spmd(problem, body)
    if comm.rank == 0:
        assert stopped is True


def test_ranks_with_different_noise_tables_stop_at_start_up(comm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if comm.rank == comm.size - 1:
        monkeypatch.setenv(NOISE_TABLE_ENV, "3000000")
    problem = NEProblem("max", "Linear(2, 1)", lambda net: 0.0, seed=1)
    if comm.rank == 0:
        settings = re.escape(str(["unset"] * (comm.size - 1) + ["3000000"]))
        with pytest.raises(RuntimeError, match=rf"HPCNE_NOISE_TABLE differs between the ranks \(per rank: {settings}"):
            spmd(problem, lambda p: p.evaluate_sampled(*sample_of(p, 5)))
    else:
        assert spmd(problem, lambda p: p.evaluate_sampled(*sample_of(p, 5))) is None
    monkeypatch.delenv(NOISE_TABLE_ENV, raising=False)
    fine = NEProblem("max", "Linear(2, 1)", lambda net: 1.0, seed=1)  # the ranks are in step again
    fitness = spmd(fine, lambda p: p.evaluate_sampled(*sample_of(p, 5)))
    if comm.rank == 0:
        np.testing.assert_array_equal(fitness, np.ones(5))


@pytest.mark.parametrize("split", ["static", "subbatch_size=3"])
def test_every_rank_updates_its_own_copy_and_a_drifted_copy_is_an_error(comm: Any, split: str) -> None:
    problem = pendulum(**SPLITS[split])
    searcher = SEARCHERS["pgpe"](problem, True)
    if comm.rank == comm.size - 1:  # this rank's update rounds one value differently (by one ulp)
        update = searcher._update_from_sums

        def drifting(*args: Any) -> None:
            update(*args)
            searcher.center[0] = torch.nextafter(searcher.center[0], torch.tensor(math.inf))

        searcher._update_from_sums = drifting  # type: ignore[method-assign]

    def body(p: Problem) -> int:
        searcher.step()  # the first round sends rank 0's state to every copy
        center = searcher.center.clone()
        with pytest.raises(WorkerError, match=r"(?s)rank (\d) on host .*the searcher state on rank \1 differs from"):
            searcher.step()
        assert torch.equal(searcher.center, center)  # the failed round changed nothing
        return p.runtime.num_workers

    assert spmd(problem, body) in (None, comm.size)


def test_a_state_changed_on_rank_0_between_generations_reaches_every_copy(comm: Any) -> None:
    def run(problem: Problem) -> list[Any]:
        searcher = SEARCHERS["snes"](problem, True)
        out = trajectory(searcher, 2)
        saved = searcher.state_dict()
        out += trajectory(searcher, 1)
        searcher.load_state_dict(saved)  # back one generation: a restored checkpoint
        searcher.center = searcher.center + 0.5  # and an edit by the user's code
        return out + trajectory(searcher, 2)

    reference = serial(lambda: run(pendulum())) if comm.rank == 0 else None
    got = spmd(pendulum(), run)  # a worker builds its copy of the searcher in run() and serves from its first step
    if comm.rank == 0:
        assert got == reference


@pytest.mark.parametrize("split", ["static", "subbatch_size=3"])
def test_a_failed_generation_leaves_every_copy_of_the_searcher_as_it_was(comm: Any, split: str) -> None:
    failed: list[bool] = []

    def score(net: torch.nn.Module) -> float:
        if comm.rank == comm.size - 1 and not failed:  # the first solution this rank gets, then never again
            failed.append(True)
            raise ArithmeticError("the last rank fails (raised on purpose)")
        return -float(sum(p.square().sum() for p in net.parameters()))

    def run(problem: Problem, fail_first: bool) -> list[Any]:
        searcher = SEARCHERS["pgpe"](problem, True)
        if fail_first:
            with pytest.raises(WorkerError, match="raised on purpose"):
                searcher.step()
        return trajectory(searcher, 2)

    make = lambda: NEProblem("max", "Linear(2, 1)", score, seed=1, **SPLITS[split])  # noqa: E731
    reference = serial(lambda: run(make(), False)) if comm.rank == 0 else None
    got = spmd(make(), lambda p: run(p, True))
    if comm.rank == 0:
        assert got == reference
