"""VecGymNE under MPI (each rank one VectorEnv for its share): the serial run's trajectory, per-job
resets and waves alike."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
import torch
from conftest import spmd

from hpcne.algorithms import PGPE
from hpcne.neuroevolution import VecGymNE
from hpcne.parallel import WorkerError, runtime

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

NET = "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)"
PROBLEMS: dict[str, dict[str, Any]] = {
    "cartpole-waves": dict(env="CartPole-v1", max_num_envs=4, num_episodes=2),
    "pendulum-per-job": dict(env="Pendulum-v1", max_num_envs=3, episode_length=30, action_noise_stdev=0.1),
}
SPLITS: dict[str, dict[str, int]] = {"static": {}, "subbatch_size=3": {"subbatch_size": 3}}


def problem(name: str, split: str) -> VecGymNE:
    return VecGymNE(network=NET, seed=11, **PROBLEMS[name], **SPLITS[split])


def trajectory(problem: VecGymNE, generations: int = 3) -> list:
    """Fitnesses, centres and counters of a few PGPE generations."""
    searcher = PGPE(problem, popsize=10, center_learning_rate=0.05, stdev_learning_rate=0.1, radius_init=2.0)
    out: list = []
    for _ in range(generations):
        searcher.step()
        out += [searcher.population.evals[:, 0].tolist(), searcher.status["center"].tolist()]
    return [*out, [problem.interaction_count, problem.episode_count], type(problem.runtime).__name__]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_vecgymne_follows_the_serial_trajectory(comm: Any, name: str, split: str) -> None:
    reference = None
    if comm.rank == 0:
        runtime.use_backend("serial")
        try:
            reference = trajectory(problem(name, split))
        finally:
            runtime.use_backend(None)
    got = spmd(problem(name, split), trajectory)
    if comm.rank == 0:
        assert got[-1] == "MPIRuntime" and reference[-1] == "SerialRuntime"
        assert got[:-1] == reference[:-1]


class LastRankFails(gym.Wrapper):
    """CartPole whose step raises on the last rank: a simulator failing on one node."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action: Any) -> Any:
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == MPI.COMM_WORLD.size - 1:
            raise OSError("the simulator lost its connection (raised on purpose)")
        return self.env.step(action)


def test_an_env_error_on_a_rank_reaches_rank_0(comm: Any) -> None:
    def body(problem: VecGymNE) -> None:
        with pytest.raises(WorkerError, match="simulator lost its connection") as caught:
            problem.evaluate_values(torch.zeros(12, problem.solution_length))
        assert caught.value.worker == comm.size - 1

    spmd(VecGymNE(LastRankFails, "Linear(obs_length, act_length)", seed=1), body)
