"""GymNE rollouts: reproducibility, independence of batching, reward arithmetic, frozen statistics,
recurrent policies and non-finite actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ne_envs import CARTPOLE_NET, ActionRewardEnv, ConstantRewardEnv, EchoEnv
from ne_envs import GYM_CONFIGS as CONFIGS
from torch import nn

from hpcne.core import STREAM_EVALUATION
from hpcne.neuroevolution import GymNE, gymne
from hpcne.neuroevolution.net import RunningStat, reset_module_state
from hpcne.neuroevolution.policies import NumpyMLP
from hpcne.seeding import derive_seed


def population(problem: GymNE, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` parameter vectors with entries N(0, 0.5^2): policies that differ visibly."""
    return 0.5 * torch.randn((n, problem.solution_length), generator=torch.Generator().manual_seed(seed))


def run_rounds(problem: GymNE, values: torch.Tensor, rounds: int = 2) -> list:
    """The fitnesses of ``values`` in each of ``rounds`` evaluations, then the (interaction, episode) counts."""
    batch = problem.generate_batch(len(values))
    fitnesses: list = []
    for _ in range(rounds):
        batch.set_values(values)
        problem.evaluate(batch)
        fitnesses.append(batch.evals[:, 0].tolist())
    fitnesses.append((problem.interaction_count, problem.episode_count))
    return fitnesses


def evaluate_rounds(config: dict, values: torch.Tensor, rounds: int = 2, **kwargs) -> tuple[list, np.ndarray | None]:
    """Fitnesses of ``values`` over several rounds (in-process), and the final observation statistics."""
    problem = GymNE(**{**config, "num_actors": None, "seed": 5, **kwargs})
    fitnesses = run_rounds(problem, values, rounds)
    stats = problem.get_observation_stats().pack() if problem.observation_normalization else None
    return fitnesses, stats


@pytest.mark.parametrize("name", CONFIGS)
def test_fitness_and_statistics_do_not_depend_on_rollout_batch_size(name: str) -> None:
    config = CONFIGS[name]
    values = population(GymNE(**config, num_actors=None), 7)
    reference, reference_stats = evaluate_rounds(config, values, rollout_batch_size=1)
    assert len(set(reference[0])) > 1  # the policies do differ
    for size in (3, 32):
        fitnesses, stats = evaluate_rounds(config, values, rollout_batch_size=size)
        assert fitnesses == reference
        if reference_stats is not None:
            assert np.array_equal(stats, reference_stats)  # bit for bit


SHRINKING = {
    **{name: CONFIGS[name] for name in ("cartpole-obsnorm-2-episodes", "cartpole-reward-shaping")},
    "cartpole-noise-obsnorm": dict(
        env="CartPole-v1", network=CARTPOLE_NET, observation_normalization=True, action_noise_stdev=0.4
    ),
}


@pytest.mark.parametrize("name", SHRINKING)
def test_the_batch_shrinks_to_the_running_episodes_and_gives_the_same_bits(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once no job is left and at most half of the slots run, the running episodes move to the front slots
    and the policy is called on those rows alone: the fitnesses, statistics and counts of a batch that
    keeps every slot (a time limit, shaped rewards and action noise move with their episodes)."""
    config = SHRINKING[name]
    values = population(GymNE(**config, num_actors=None), 24)
    widths: list[int] = []
    forward = NumpyMLP.__call__

    def spy(self: NumpyMLP, obs: np.ndarray, rows: object = None) -> np.ndarray:
        widths.append(len(obs))
        return forward(self, obs, rows)

    monkeypatch.setattr(NumpyMLP, "__call__", spy)
    shrunk = evaluate_rounds(config, values, rollout_batch_size=32)
    slots = min(32, len(values) * config.get("num_episodes", 1))
    assert widths[0] == slots and min(widths) < slots // 2  # it did shrink, more than once
    assert len(set(widths)) > 2
    monkeypatch.setattr(NumpyMLP, "shrinkable", False)
    widths.clear()
    kept = evaluate_rounds(config, values, rollout_batch_size=32)
    assert set(widths) == {slots}
    assert shrunk[0] == kept[0]
    assert np.array_equal(shrunk[1], kept[1]) if kept[1] is not None else shrunk[1] is None


class RetypedObservations(gym.ObservationWrapper):
    """CartPole whose observations come as another array than its float32 space says, or (``float32``) as
    the contiguous float32 arrays that the engine makes of them."""

    def __init__(self, kind: str, float32: bool = False) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.kind, self.float32 = kind, float32

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if self.kind == "float64":
            observation = observation.astype(np.float64)
        elif self.kind == "strided":  # a view that is not contiguous
            observation = np.repeat(observation, 2)[::2]
        else:  # another type of the same size, whose bytes are no float32's
            observation = (observation * 1000).astype(np.int32)
        return np.ascontiguousarray(observation, np.float32) if self.float32 else observation


@pytest.mark.parametrize("kind", ["float64", "strided", "int32"])
def test_observations_of_another_type_or_layout_are_converted(kind: str) -> None:
    """The engine copies float32 observations into its batch as joined bytes; it converts any other array."""
    config = {"network": CARTPOLE_NET, "observation_normalization": True, "num_episodes": 2}
    values = population(GymNE(env="CartPole-v1", **config, num_actors=None), 9)
    expected = evaluate_rounds({"env": lambda: RetypedObservations(kind, float32=True), **config}, values)
    for size in (1, 16):  # row by row, and many busy slots at once
        found = evaluate_rounds({"env": lambda: RetypedObservations(kind), **config}, values, rollout_batch_size=size)
        assert found[0] == expected[0]
        assert np.array_equal(found[1], expected[1])


@pytest.mark.parametrize("name", ["cartpole-obsnorm-2-episodes", "pendulum-noise-obsnorm"])
def test_fitness_does_not_depend_on_neighbours_and_follows_the_seed(name: str) -> None:
    config = CONFIGS[name]
    values = population(GymNE(**config, num_actors=None), 6)
    (first, *_), _ = evaluate_rounds(config, values, rounds=1)
    (again, *_), _ = evaluate_rounds(config, values, rounds=1)
    assert again == first
    others = values.clone()
    others[[0, 3, 4]] = population(GymNE(**config, num_actors=None), 3, seed=1)
    (mixed, *_), _ = evaluate_rounds(config, others, rounds=1)
    assert [mixed[i] for i in (1, 2, 5)] == [first[i] for i in (1, 2, 5)]
    (reseeded, *_), _ = evaluate_rounds(config, values, rounds=1, seed=6)
    assert reseeded != first


def test_pool_gives_the_serial_results() -> None:
    config = CONFIGS["cartpole-obsnorm-2-episodes"]
    values = population(GymNE(**config, num_actors=None), 6)
    serial = evaluate_rounds(config, values)
    problem = GymNE(**config, num_actors=2, seed=5)
    try:
        fitnesses = run_rounds(problem, values)
        assert fitnesses == serial[0]
        assert np.allclose(problem.get_observation_stats().pack(), serial[1], rtol=1e-12)
    finally:
        problem.kill_actors()


# ---------------------------------------------------------------------------- reward arithmetic
@pytest.mark.parametrize(
    ("kwargs", "expected_return", "expected_steps"),
    [
        ({}, 10.0, 10),
        ({"decrease_rewards_by": 0.25}, 7.5, 10),
        ({"episode_length": 4}, 4.0, 4),
        ({"alive_bonus_schedule": (3, 0.5)}, 10.0 + 8 * 0.5, 10),  # steps 3..10 get the bonus
        ({"alive_bonus_schedule": (2, 6, 1.0)}, 10.0 + 0.25 + 0.5 + 0.75 + 5 * 1.0, 10),  # ramp, then full
        ({"alive_bonus_schedule": (2, 6, 1.0), "decrease_rewards_by": 1.0, "episode_length": 5}, 1.5, 5),
        ({"num_episodes": 3, "decrease_rewards_by": 0.5}, 5.0, 30),
    ],
)
def test_reward_arithmetic(kwargs: dict, expected_return: float, expected_steps: int) -> None:
    problem = GymNE(ConstantRewardEnv, "Linear(obs_length, act_length)", num_actors=None, **kwargs)
    batch = problem.generate_batch(2)
    problem.evaluate(batch)
    assert batch.evals[:, 0].tolist() == [expected_return, expected_return]
    assert problem.interaction_count == 2 * expected_steps
    assert problem.episode_count == 2 * kwargs.get("num_episodes", 1)


def test_discrete_actions_with_an_offset_start() -> None:
    env = ActionRewardEnv(gym.spaces.Discrete(3, start=-1))
    problem = GymNE(lambda: env, "Linear(obs_length, act_length)", num_actors=None, rollout_batch_size=1)
    favour_first = torch.tensor([0.0, 0, 0, 0, 0, 0, 1.0, 0, 0])  # biases (1, 0, 0): argmax 0
    assert problem.run(favour_first)["cumulative_reward"] == -3.0  # action -1, three times
    assert problem.run(torch.roll(favour_first, 2))["cumulative_reward"] == 3.0  # argmax 2: action 1


def test_action_noise_reaches_discrete_actions_reproducibly() -> None:
    def returns(noise: float | None) -> list[float]:
        problem = GymNE(
            lambda: ActionRewardEnv(gym.spaces.Discrete(2), horizon=20),
            "Linear(obs_length, act_length)",
            action_noise_stdev=noise,
            num_actors=None,
            seed=0,
        )
        batch = problem.generate_batch(4)
        batch.set_values(torch.zeros(4, problem.solution_length))
        problem.evaluate(batch)
        return batch.evals[:, 0].tolist()

    assert returns(None) == [0.0] * 4  # all-zero outputs: argmax 0
    noisy = returns(1.0)
    assert noisy == returns(1.0) and all(0 < r < 20 for r in noisy)  # as EvoTorch: noise before the argmax


def test_box_actions_keep_the_space_shape_and_dtype() -> None:
    env = ActionRewardEnv(gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32))
    problem = GymNE(lambda: env, "Linear(obs_length, act_length)", action_noise_stdev=0.1, num_actors=None)
    assert problem.run(torch.full((problem.solution_length,), 5.0))["cumulative_reward"] == 12.0  # clipped at 1
    assert all(a.shape == (2, 2) and a.dtype == np.float32 for a in env.actions)


# ---------------------------------------------------------------------------- frozen statistics
@pytest.mark.parametrize("rollout_batch_size", [1, 32])
def test_statistics_are_frozen_during_a_round_and_merged_after(rollout_batch_size: int) -> None:
    problem = GymNE(
        EchoEnv,
        "Linear(obs_length, act_length)",
        observation_normalization=True,
        num_actors=None,
        rollout_batch_size=rollout_batch_size,
    )
    start = RunningStat(2)
    start.update(np.array([[100.0, 0.0], [102.0, 0.0]]))  # mean 101, stdev 1 in the first value
    problem.set_observation_stats(start)
    batch = problem.generate_batch(3)
    batch.set_values(torch.tensor([[1.0, 0.0, 0.0]]).repeat(3, 1))  # action = first normalised value
    problem.evaluate(batch)
    # Each solution saw observations 1..5 normalised with the statistics of the round's start.
    assert batch.evals[:, 0].tolist() == [sum(v - 101.0 for v in range(1, 6))] * 3
    observations = np.array([[t, 10 * t] for t in range(1, 7)] * 3, float)  # reset + 5 steps, 3 times
    expected = start.copy()
    expected.update(observations)
    assert problem.get_observation_stats().count == 20
    assert np.allclose(problem.get_observation_stats().pack(), expected.pack(), rtol=1e-12)
    assert problem.pop_observation_stats().count == 18  # the delta of the evaluations alone
    # The next round uses the merged statistics.
    problem.evaluate(batch)
    mean, stdev = np.float32(expected.mean[0]), np.float32(expected.stdev[0])
    assert batch.evals[0, 0] == pytest.approx(sum(float((np.float32(v) - mean) / stdev) for v in range(1, 6)))


# ---------------------------------------------------------------------------- recurrent policies
def reference_return(problem: GymNE, x: torch.Tensor, eval_round: int, index: int, episode: int) -> float:
    """One CartPole episode of ``x`` as a plain loop: the seed is derived from its position in the run."""
    net = problem.make_net(x)
    reset_module_state(net)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=derive_seed(problem.seed, STREAM_EVALUATION, eval_round, index, episode))
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = np.argmax(net(torch.as_tensor(obs, dtype=torch.float32)).numpy())
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + float(reward), terminated or truncated
    return total


@pytest.mark.parametrize(
    "network", ["RNN(obs_length, 4) >> Linear(4, act_length)", "LSTM(obs_length, 3) >> Linear(3, act_length)"]
)
@pytest.mark.parametrize("rollout_batch_size", [1, 3])
def test_recurrent_rollouts_match_a_plain_loop(network: str, rollout_batch_size: int) -> None:
    problem = GymNE(
        "CartPole-v1", network, num_episodes=2, num_actors=None, seed=3, rollout_batch_size=rollout_batch_size
    )
    values = population(problem, 4)
    batch = problem.generate_batch(4)
    batch.set_values(values)
    problem.evaluate(batch)
    expected = [np.mean([reference_return(problem, values[i], 0, i, ep) for ep in range(2)]) for i in range(4)]
    assert batch.evals[:, 0].tolist() == expected


def test_recurrent_state_is_reset_at_each_episode() -> None:
    def fitness(num_episodes: int) -> float:
        problem = GymNE(
            EchoEnv, "RNN(obs_length, 3) >> Linear(3, act_length)", num_episodes=num_episodes, num_actors=None
        )
        batch = problem.generate_batch(1)
        batch.set_values(population(problem, 1))
        problem.evaluate(batch)
        return float(batch.evals[0, 0])

    # EchoEnv ignores seeds, so every episode is the same: the mean equals one episode's return.
    assert fitness(3) == pytest.approx(fitness(1), rel=1e-6)


class TorchPathGymNE(GymNE):
    """Overrides _evaluate_network, so every solution goes through the per-solution module path."""

    def _evaluate_network(self, policy: nn.Module) -> float:
        return super()._evaluate_network(policy)


def test_subclass_path_matches_the_lockstep_path() -> None:
    config = CONFIGS["cartpole-recurrent"]
    values = population(GymNE(**config, num_actors=None), 5)
    lockstep = evaluate_rounds(config, values)
    problem = TorchPathGymNE(**config, num_actors=None, seed=5)
    fitnesses = run_rounds(problem, values)
    assert fitnesses == lockstep[0]
    assert np.array_equal(problem.get_observation_stats().pack(), lockstep[1])


# ---------------------------------------------------------------------------- non-finite actions
@pytest.mark.parametrize("problem_class", [GymNE, TorchPathGymNE])
@pytest.mark.parametrize("rollout_batch_size", [1, 32])
def test_nan_action_names_the_solution(problem_class: type, rollout_batch_size: int) -> None:
    problem = problem_class(
        "CartPole-v1", CARTPOLE_NET, num_actors=None, num_episodes=2, rollout_batch_size=rollout_batch_size
    )
    batch = problem.generate_batch(4)
    values = batch.access_values()
    values[2, -1] = float("nan")  # an output bias
    with pytest.raises(FloatingPointError, match=r"Solution 2 produced a non-finite action \[.*nan") as info:
        problem.evaluate(batch)
    assert info.value.hpcne_solution_index == 2


def test_an_evaluation_aside_changes_nothing_and_collects_no_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """A centre evaluation: its fitnesses are the round's, and the problem is left as it was."""
    problem = GymNE(env="CartPole-v1", network=CARTPOLE_NET, observation_normalization=True, num_actors=None, seed=5)
    values = population(problem, 3)
    run_rounds(problem, values, rounds=1)  # statistics to normalize with
    before = problem.interaction_count, problem.episode_count, problem.get_observation_stats().pack()
    collecting = []
    lockstep = gymne.run_lockstep

    def spy(*args: object, **kwargs: object) -> object:
        collecting.append(kwargs["collect_stats"])
        return lockstep(*args, **kwargs)

    monkeypatch.setattr(gymne, "run_lockstep", spy)
    aside = problem._evaluate_aside(values.numpy(), 7, num_episodes=3)
    assert collecting == [False]
    after = problem.interaction_count, problem.episode_count, problem.get_observation_stats().pack()
    assert after[:2] == before[:2] and np.array_equal(after[2], before[2])
    problem._num_episodes = 3
    expected = problem._evaluate_local(values.numpy(), 0, 7)
    assert collecting == [False, True] and expected.obs_delta is not None
    assert aside.tolist() == expected.fitness.tolist()
