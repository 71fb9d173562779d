"""The MPI runtime in-process, on every rank: layouts, merged state, failures, stop requests, devices."""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pytest
import torch
from conftest import spmd

from hpcne.algorithms import PGPE
from hpcne.core import Problem
from hpcne.neuroevolution import GymNE, NEProblem
from hpcne.parallel import WorkerError, runtime, signals
from hpcne.parallel.mpi import MPIRuntime

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

SPLITS: dict[str, dict[str, int]] = {
    "static": {},
    "num_subbatches=7": {"num_subbatches": 7},
    "subbatch_size=3": {"subbatch_size": 3},
}


def pendulum(obs_norm: bool = False, **split: int) -> GymNE:
    return GymNE(
        "Pendulum-v1",
        "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)",
        seed=11,
        observation_normalization=obs_norm,
        episode_length=30,
        action_noise_stdev=0.1,
        num_actors=None,
        **split,
    )


def pgpe(problem: Problem) -> PGPE:
    return PGPE(problem, popsize=10, center_learning_rate=0.05, stdev_learning_rate=0.1, radius_init=2.0)


def trajectory(problem: Problem, generations: int = 3) -> list[list[float]]:
    """Fitnesses, centres and counters of a few PGPE generations."""
    searcher = pgpe(problem)
    out = []
    for _ in range(generations):
        searcher.step()
        out += [searcher.population.evals[:, 0].tolist(), searcher.status["center"].tolist()]
    return [*out, [problem.interaction_count, problem.episode_count]]


def serial(build: Any) -> Any:
    runtime.use_backend("serial")
    try:
        return build()
    finally:
        runtime.use_backend(None)


@pytest.mark.parametrize("split", SPLITS)
def test_searcher_trajectory_matches_the_serial_run(comm: Any, split: str) -> None:
    reference = serial(lambda: trajectory(pendulum(**SPLITS[split]))) if comm.rank == 0 else None
    got = spmd(pendulum(**SPLITS[split]), trajectory)
    if comm.rank == 0:
        assert got == reference


def test_every_rank_holds_the_merged_state_after_each_generation(comm: Any) -> None:
    problem = pendulum(obs_norm=True, subbatch_size=3)
    searcher = pgpe(problem)
    for _ in range(3):
        spmd(problem, lambda _: searcher.step())
        state = (
            problem.get_observation_stats().pack(),
            problem.interaction_count,
            problem.episode_count,
            problem._eval_round,
        )
        states = comm.allgather(state)
        assert states[0][0][0] > 0, "statistics were collected"
        for other in states[1:]:
            np.testing.assert_array_equal(other[0], states[0][0])
            assert other[1:] == states[0][1:]


def raising_eval(net: torch.nn.Module) -> float:
    first = float(next(net.parameters()).reshape(-1)[0])
    if first == 99:
        raise ArithmeticError("bad solution (raised on purpose)")
    return first


@pytest.mark.parametrize("split", ["static", "subbatch_size=3"])
def test_an_exception_on_a_rank_is_raised_on_rank_0_and_the_runtime_survives(comm: Any, split: str) -> None:
    problem = NEProblem("max", "Linear(2, 1)", raising_eval, seed=1, **SPLITS[split])
    bad = torch.zeros(12, 3)
    bad[11, 0] = 99  # the last row, evaluated by the last rank in a static split

    def body(p: Problem) -> np.ndarray:
        with pytest.raises(WorkerError) as caught:
            p.evaluate_values(bad)
        message = str(caught.value)
        if split == "static":
            assert caught.value.worker == comm.size - 1
        assert re.match(r"rank \d on host \S+ failed while evaluating solution 11:\nTraceback", message)
        assert message.rstrip().endswith("ArithmeticError: bad solution (raised on purpose)")
        return p.evaluate_values(torch.arange(36.0).reshape(12, 3))

    fitness = spmd(problem, body)
    if comm.rank == 0:
        np.testing.assert_array_equal(fitness, np.arange(0.0, 36.0, 3.0))


def test_a_rank_that_cannot_start_is_named_before_any_work(comm: Any) -> None:
    def network() -> torch.nn.Module:
        if comm.rank == comm.size - 1:
            raise ImportError("no such layer on this rank (raised on purpose)")
        return torch.nn.Linear(2, 1)

    problem = NEProblem("max", network, raising_eval, seed=1)
    if comm.rank == 0:
        with pytest.raises(
            WorkerError, match=rf"rank {comm.size - 1} on host \S+ failed at start-up:\n(.|\n)*no such layer"
        ):
            spmd(problem, lambda p: p.evaluate_values(torch.zeros(4, 3)))
    else:
        assert spmd(problem, lambda p: p.evaluate_values(torch.zeros(4, 3))) is None
    # the ranks are in step again: a new runtime works
    fine = NEProblem("max", "Linear(2, 1)", raising_eval, seed=1)
    fitness = spmd(fine, lambda p: p.evaluate_values(torch.ones(5, 3)))
    if comm.rank == 0:
        np.testing.assert_array_equal(fitness, np.ones(5))


@pytest.mark.parametrize("split", SPLITS)
def test_a_population_smaller_than_the_job_leaves_ranks_idle(comm: Any, split: str) -> None:
    problem = pendulum(obs_norm=True, **SPLITS[split])
    fitness = spmd(problem, lambda p: p.evaluate_values(torch.zeros(1, p.solution_length)))
    if comm.rank == 0:
        reference = pendulum(obs_norm=True)
        np.testing.assert_array_equal(
            fitness, serial(lambda: reference.evaluate_values(torch.zeros(1, reference.solution_length)))
        )
        assert (problem.interaction_count, problem.episode_count) == (30, 1)


def random_fitness_problem(seed: int | None) -> Problem:
    def fitness(x: torch.Tensor) -> float:
        return float(torch.rand(1, generator=problem.generator, dtype=torch.float64)) + float(x.sum())

    problem = Problem("min", fitness, solution_length=2, seed=seed)
    return problem


def test_workers_adopt_the_seed_of_rank_0(comm: Any) -> None:
    problem = random_fitness_problem(seed=None)  # every rank draws its own seed
    fitness = spmd(problem, lambda p: p.evaluate_values(torch.zeros(9, 2)))
    seeds = comm.allgather(problem.seed)
    assert len(set(seeds)) == 1
    if comm.rank == 0:
        reference = serial(lambda: random_fitness_problem(problem.seed).evaluate_values(torch.zeros(9, 2)))
        np.testing.assert_array_equal(fitness, reference)


def test_a_stop_request_on_any_rank_reaches_rank_0(comm: Any) -> None:
    if comm.rank == comm.size - 1:
        signals.request_stop()
    problem = random_fitness_problem(seed=1)

    def body(p: Problem) -> bool:
        assert not p.runtime.stop_requested
        p.evaluate_values(torch.zeros(3, 2))
        return p.runtime.stop_requested

    stopped = spmd(problem, body)
    if comm.rank == 0:
        assert not signals.stop_requested(), "rank 0 itself was not asked to stop"
        assert stopped is True, "the request came with the round's Allreduce"


def test_ranks_use_the_gpus_of_their_node_round_robin(comm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    problem = random_fitness_problem(seed=1)
    problem.actor_config = {"num_gpus": 1}
    placed: list[torch.device] = []
    monkeypatch.setattr(problem, "_use_device", placed.append)

    def body(p: Problem) -> list[tuple[str, str]]:
        assert isinstance(p.runtime, MPIRuntime)
        return p.runtime.devices

    devices = spmd(problem, body)
    assert placed == [torch.device("cuda", comm.rank % 2)]  # all ranks share this node
    if comm.rank == 0:
        assert [d for _, d in devices] == [f"cuda:{r % 2}" for r in range(comm.size)]


@pytest.mark.parametrize("split", ["static", "subbatch_size=3"])
def test_every_rank_times_its_own_evaluation(comm: Any, split: str) -> None:
    def fitness(x: torch.Tensor) -> float:
        time.sleep(0.02)
        return float(x.sum())

    n = 3 * comm.size
    problem = Problem("min", fitness, solution_length=2, seed=0, **SPLITS[split])

    def evaluate(p: Problem) -> float:
        p.evaluate_values(torch.zeros(n, 2))
        return p.runtime.compute_seconds

    compute = spmd(problem, evaluate)
    if comm.rank == 0:
        assert compute is not None and 3 * 0.02 <= compute < 3 * 0.02 + 1.0, compute
        assert 0.0 <= problem.comm_seconds == pytest.approx(problem.eval_seconds - compute)
