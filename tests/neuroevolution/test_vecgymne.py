"""VecGymNE: equality with GymNE, autoreset handling and episode accounting, independence of the layout,
validation, failures."""

from __future__ import annotations

import os
from itertools import pairwise
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from ne_envs import (
    CARTPOLE_NET,
    ConstantRewardEnv,
    CountdownEnv,
    CountdownVectorEnv,
    TorchCartPoleVectorEnv,
    TorchVectorEnv,
    torch_vector_factory,
)
from ne_envs import GYM_CONFIGS as CONFIGS

from hpcne.algorithms import PGPE
from hpcne.neuroevolution import GymNE, VecGymNE
from hpcne.neuroevolution.gymne import AUTO_ROLLOUT_BATCH, even_slots
from hpcne.neuroevolution.vecgymne import DEFAULT_NUM_ENVS, SlotVectorEnv, make_vector_env
from hpcne.parallel import WorkerError


def population(length: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 parameter vectors with entries N(0, 0.5^2): policies that differ visibly."""
    return (0.5 * np.random.default_rng(seed).standard_normal((n, length))).astype(np.float32)


def scalar_factory(env_id: str) -> Any:
    """A function making the scalar env ``env_id``: VecGymNE wraps it in a sync vector env with per-job resets."""
    return lambda **config: gym.make(env_id, **config)


def evaluate_pieces(problem: GymNE, values: np.ndarray, cuts: list[int], eval_round: int = 0) -> dict[str, Any]:
    """Evaluate ``values`` in pieces split at ``cuts`` (as workers would); the merged results."""
    bounds = [0, *cuts, len(values)]
    parts = [problem._evaluate_local(values[a:b], a, eval_round) for a, b in pairwise(bounds)]
    deltas = [p.obs_delta for p in parts if p.obs_delta is not None]
    return {
        "fitness": np.concatenate([p.fitness for p in parts]).tolist(),
        "episodes": sum(p.episodes for p in parts),
        "interactions": sum(p.interactions for p in parts),
        "stats": np.sum(deltas, axis=0).tolist() if deltas else None,
    }


def assert_same_but_rounding(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same results, the statistics up to float64 rounding: pieces' sums are added in another order."""
    assert {**got, "stats": None} == {**expected, "stats": None}
    if expected["stats"] is not None:
        np.testing.assert_allclose(got["stats"], expected["stats"], rtol=1e-12)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("max_num_envs", [1, 3, 64])
def test_per_job_resets_give_gymnes_results_bit_for_bit(name: str, max_num_envs: int) -> None:
    """A sync vector env of the same scalar envs: every episode starts from GymNE's seed for it."""
    config = dict(CONFIGS[name])
    env_id = config.pop("env")
    reference = GymNE(env_id, **config, num_actors=None, seed=5)
    problem = VecGymNE(scalar_factory(env_id), **config, max_num_envs=max_num_envs, seed=5)
    assert problem.per_job_resets
    values = population(reference.solution_length, 7)
    expected = evaluate_pieces(reference, values, [])
    assert len(set(expected["fitness"])) > 1  # the policies do differ
    assert evaluate_pieces(problem, values, []) == expected
    assert_same_but_rounding(evaluate_pieces(problem, values, [2, 3]), expected)  # any split into pieces


@pytest.mark.parametrize("autoreset", ["NextStep", "SameStep"])
@pytest.mark.parametrize("schedule", ["waves", "refill"])
@pytest.mark.parametrize(("max_num_envs", "episode_length"), [(1, None), (4, None), (16, None), (1, 5), (4, 5)])
def test_autoresetting_vector_envs_count_each_episode_exactly(
    autoreset: str, schedule: str, max_num_envs: int, episode_length: int | None
) -> None:
    """Episodes of varied lengths on a vector env that resets itself: returns, step and episode counts
    and observation statistics as GymNE's on the scalar env (it is seed-independent), whatever the
    number of sub-environments, also when episode_length cuts episodes that the env goes on with; a
    NEXT_STEP reset step (reward 1000) is never counted."""
    options = dict(
        observation_normalization=True, num_episodes=2, decrease_rewards_by=0.5, episode_length=episode_length, seed=3
    )
    reference = GymNE(CountdownEnv, "Linear(obs_length, act_length)", num_actors=None, **options)
    problem = VecGymNE(
        CountdownVectorEnv,
        "Linear(obs_length, act_length)",
        env_config={"autoreset": autoreset},
        max_num_envs=max_num_envs,
        schedule=schedule,
        **options,
    )
    assert not problem.per_job_resets
    values = population(reference.solution_length, 9, seed=2)
    expected = evaluate_pieces(reference, values, [])
    assert len(set(expected["fitness"])) > 1 and max(expected["fitness"]) < 1000
    assert evaluate_pieces(problem, values, []) == expected
    assert_same_but_rounding(evaluate_pieces(problem, values, [4, 5]), expected)


def test_returns_follow_the_reward_options_and_the_time_limit() -> None:
    """Checked by hand: 7 steps (episode_length) of reward 1 - 0.25 plus the bonus ramp (2, 4, 1.0)."""
    problem = VecGymNE(
        lambda: ConstantRewardEnv(horizon=10),
        "Linear(obs_length, act_length)",
        episode_length=7,
        num_episodes=3,
        decrease_rewards_by=0.25,
        alive_bonus_schedule=(2, 4, 1.0),
        max_num_envs=4,
    )
    bonus = [0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]  # steps 1..7
    result = problem._evaluate_local(population(problem.solution_length, 5), 0, 0)
    assert result.fitness.tolist() == [7 * 0.75 + sum(bonus)] * 5
    assert (result.episodes, result.interactions) == (15, 105)


def test_waves_do_not_depend_on_the_split_but_on_their_size() -> None:
    """CartPole-v1's vector entry point resets all sub-environments from one generator: episodes start
    from their wave's seed at their position, both fixed by the job's number in the population."""
    problem = VecGymNE("CartPole-v1", CARTPOLE_NET, max_num_envs=8, num_episodes=2, seed=1)
    assert not problem.per_job_resets
    values = population(problem.solution_length, 13)
    whole = evaluate_pieces(problem, values, [])
    assert whole["episodes"] == 26 and len(set(whole["fitness"])) > 3
    assert evaluate_pieces(problem, values, [3, 4, 11]) == whole
    assert evaluate_pieces(problem, values, [], eval_round=1) != whole  # a new round, new starts
    other = VecGymNE("CartPole-v1", CARTPOLE_NET, max_num_envs=5, num_episodes=2, seed=1)
    assert evaluate_pieces(other, values, [])["fitness"] != whole["fitness"]


def test_refill_is_reproducible_for_one_split_and_starts_each_episode_once() -> None:
    """Refill: sub-environments start their next episode at their autoreset, from the vector env's own
    random state, so the results repeat for the same pieces but not for others."""
    problem = VecGymNE("CartPole-v1", CARTPOLE_NET, max_num_envs=4, num_episodes=2, schedule="refill", seed=1)
    values = population(problem.solution_length, 13)
    whole = evaluate_pieces(problem, values, [])
    assert whole["episodes"] == 26 and len(set(whole["fitness"])) > 3
    assert evaluate_pieces(problem, values, []) == whole
    assert problem._venv.num_envs == 4
    waves = VecGymNE("CartPole-v1", CARTPOLE_NET, max_num_envs=4, num_episodes=2, seed=1)
    assert evaluate_pieces(waves, values, [])["fitness"] != whole["fitness"]
    with pytest.raises(ValueError, match="schedule must be one of 'waves', 'refill'"):
        VecGymNE("CartPole-v1", CARTPOLE_NET, schedule="fast")


def test_pgpe_on_a_pool_follows_the_serial_trajectory() -> None:
    def trajectory(num_actors: int | None, **split: int) -> list:
        problem = VecGymNE(
            "CartPole-v1",
            CARTPOLE_NET,
            max_num_envs=8,
            observation_normalization=True,
            seed=4,
            num_actors=num_actors,
            **split,
        )
        searcher = PGPE(problem, popsize=10, center_learning_rate=0.1, stdev_learning_rate=0.1, radius_init=2.0)
        try:
            out = []
            for _ in range(3):
                searcher.step()
                out += [searcher.population.evals[:, 0].tolist(), searcher.status["center"].tolist()]
            return [*out, problem.interaction_count, problem.episode_count, type(problem.runtime).__name__]
        finally:
            problem.kill_actors()

    *serial, runtime = trajectory(None)
    assert runtime == "SerialRuntime"
    assert trajectory(2) == [*serial, "PoolRuntime"]
    assert trajectory(2, subbatch_size=3) == [*serial, "PoolRuntime"]


def test_the_vector_env_follows_its_kind() -> None:
    assert type(make_vector_env("CartPole-v1", {}, 3)).__name__ == "CartPoleVectorEnv"
    sync = make_vector_env("Pendulum-v1", {"g": 9.0}, 2)
    assert isinstance(sync, gym.vector.SyncVectorEnv) and sync.num_envs == 2
    assert sync.metadata["autoreset_mode"] == gym.vector.AutoresetMode.DISABLED
    problem = VecGymNE("gym::Pendulum-v1", "Linear(obs_length, act_length)")
    assert problem.per_job_resets and problem.max_num_envs is None and problem.env_id == "Pendulum-v1"
    problem._evaluate_local(population(problem.solution_length, 3), 0, 0)
    assert problem._venv.num_envs == 3  # per-job resets: no more sub-environments than episodes
    problem._evaluate_local(population(problem.solution_length, 40), 0, 0)
    assert problem._venv.num_envs == even_slots(40, problem._auto_slots)  # GymNE's automatic choice
    assert problem._auto_slots <= AUTO_ROLLOUT_BATCH
    waves = VecGymNE("CartPole-v1", "Linear(obs_length, act_length)")
    waves._evaluate_local(population(waves.solution_length, 3), 0, 0)
    assert waves._venv.num_envs == DEFAULT_NUM_ENVS  # the wave grid's size, whatever the piece


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"env": "brax::ant"}, ValueError, "gymnasium"),
        ({"env": "NoSuchEnv-v0"}, ValueError, "Could not create the vector environment"),
        ({"max_num_envs": 0}, ValueError, "max_num_envs must be a positive int"),
        ({"env": lambda num_envs: gym.make("CartPole-v1")}, TypeError, "must return a gymnasium.vector.VectorEnv"),
        ({"network": "Linear(obs_length, 3)"}, ValueError, "needs 2"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        VecGymNE(**{"env": "CartPole-v1", "network": "Linear(obs_length, act_length)", **kwargs})


def test_a_non_finite_action_names_its_solution() -> None:
    problem = VecGymNE("CartPole-v1", "Linear(obs_length, act_length)", max_num_envs=4)
    values = population(problem.solution_length, 6)
    values[4, 0] = np.nan
    with pytest.raises(FloatingPointError, match="Solution 9 produced a non-finite action") as info:
        problem._evaluate_local(values, 5, 0)
    assert info.value.hpcne_solution_index == 9


def test_run_and_to_policy_use_the_scalar_environment() -> None:
    problem = VecGymNE("CartPole-v1", CARTPOLE_NET, observation_normalization=True, seed=2)
    values = population(problem.solution_length, 4)
    problem.evaluate_values(values)
    assert problem.episode_count == 4 and problem.get_observation_stats().count == problem.interaction_count + 4
    policy = problem.to_policy(torch.from_numpy(values[0]))
    assert problem.run(policy)["cumulative_reward"] >= 8
    vector_only = VecGymNE(CountdownVectorEnv, "Linear(obs_length, act_length)")
    with pytest.raises(TypeError, match="makes vector environments only"):
        vector_only.run(torch.zeros(vector_only.solution_length))


class WorkerFails(gym.Wrapper):
    """CartPole whose step raises outside the process named by ``PARENT_PID``: in pool workers."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action: Any) -> Any:
        if os.getpid() != int(os.environ["PARENT_PID"]):
            raise OSError("the simulator lost its connection (raised on purpose)")
        return self.env.step(action)


def test_an_env_error_in_a_pool_worker_is_raised_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARENT_PID", str(os.getpid()))
    problem = VecGymNE(WorkerFails, "Linear(obs_length, act_length)", num_actors=2, seed=1)
    try:
        with pytest.raises(WorkerError, match=r"pool worker \d on host \S+ failed(.|\n)*simulator lost its connection"):
            problem.evaluate_values(np.zeros((6, problem.solution_length), np.float32))
    finally:
        problem.kill_actors()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_policies_on_cuda_agree_with_the_cpu() -> None:
    values = population(VecGymNE("Pendulum-v1", CARTPOLE_NET).solution_length, 16)
    cpu = VecGymNE("Pendulum-v1", CARTPOLE_NET, seed=1)._evaluate_local(values, 0, 0).fitness
    cuda = VecGymNE("Pendulum-v1", CARTPOLE_NET, seed=1, device="cuda")._evaluate_local(values, 0, 0).fitness
    np.testing.assert_allclose(cuda, cpu, rtol=1e-3)


# (numpy vector env factory, VecGymNE options) of the torch-path tests: an autoresetting vector entry
# point (NEXT_STEP), one with SAME_STEP final observations on the refill schedule, and a sync vector env
# with per-job resets and Box actions with action noise.
TORCH_CASES = {
    "cartpole": (lambda num_envs: gym.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point"), {}),
    "countdown-same-step-refill": (
        lambda num_envs: CountdownVectorEnv(num_envs, autoreset="SameStep"),
        {"schedule": "refill", "num_episodes": 2, "episode_length": 7},
    ),
    "pendulum-per-job": (
        lambda num_envs: SlotVectorEnv(lambda: gym.make("Pendulum-v1"), num_envs),
        {"action_noise_stdev": 0.1, "episode_length": 30},
    ),
}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def two_rounds(problem: VecGymNE, values: np.ndarray) -> list[Any]:
    """Two evaluations, the second with the observation statistics that the first collected."""
    results = []
    for eval_round in range(2):
        result = problem._evaluate_local(values, 0, eval_round)
        problem._apply_eval_result(result)
        results.append((result.fitness.tolist(), result.episodes, result.interactions, result.obs_delta.tolist()))
    return results


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_a_torch_vector_env_keeps_the_piece_on_its_device_with_the_numpy_paths_results(
    case: str, backend: str, device: str
) -> None:
    """Observations, normalization, policy, actions and statistics stay torch tensors on the device (the
    env refuses numpy actions), with the results of the same env speaking numpy: bit for bit on the CPU."""
    make, options = TORCH_CASES[case]
    common = dict(observation_normalization=True, seed=4, max_num_envs=5, policy_backend=backend, **options)
    on_device = VecGymNE(torch_vector_factory(make, device), CARTPOLE_NET, device=device, **common)
    numpy_env = VecGymNE(lambda num_envs: make(num_envs), CARTPOLE_NET, device=device, **common)
    values = population(numpy_env.solution_length, 9, seed=1)
    got, expected = two_rounds(on_device, values), two_rounds(numpy_env, values)
    assert isinstance(on_device._venv, TorchVectorEnv) and on_device._venv.steps > 0
    assert len(set(expected[1][0])) > 1  # the policies differ
    assert got == expected  # the same kernels on the same device, element-wise operations IEEE-exact


@pytest.mark.parametrize("device", DEVICES)
def test_a_torch_native_cartpole_gives_gymnasiums_returns(device: str) -> None:
    """CartPole-v1's vector env rewritten in torch (start states drawn alike): the same returns and counts as
    gymnasium's numpy one for short random-policy episodes; statistics up to sin/cos rounding."""
    common = dict(observation_normalization=True, seed=2, max_num_envs=6, num_episodes=2, device=device)
    native = VecGymNE(lambda num_envs: TorchCartPoleVectorEnv(num_envs, device), CARTPOLE_NET, **common)
    gymnasium = VecGymNE("CartPole-v1", CARTPOLE_NET, **common)
    values = population(native.solution_length, 10, seed=3)
    got, expected = two_rounds(native, values), two_rounds(gymnasium, values)
    assert len(set(expected[1][0])) > 1  # the policies differ
    for (*results, stats), (*expected_results, expected_stats) in zip(got, expected):
        assert results == expected_results
        np.testing.assert_allclose(stats, expected_stats, rtol=1e-6)
