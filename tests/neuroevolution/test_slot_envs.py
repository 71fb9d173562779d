"""The slot environments of the rollout engine: stepped under gym.make's wrappers, and how many there are."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from hpcne.neuroevolution import GymNE
from hpcne.neuroevolution.gymne import AUTO_ROLLOUT_BATCH, ENGINE_SHARE, choose_slots, even_slots, unwrap_make


class Passthrough(gym.Wrapper):
    """A user's wrapper that changes nothing: it keeps the whole chain, wrappers included."""


def wrapped(env_id: str) -> Any:
    def make(**config: Any) -> gym.Env:
        return Passthrough(gym.make(env_id, **config))

    return make


def test_unwrap_make_strips_only_gym_makes_own_wrappers() -> None:
    inner, limit = unwrap_make(gym.make("CartPole-v1"))
    assert type(inner).__name__ == "CartPoleEnv" and limit == 500
    inner, limit = unwrap_make(gym.make("Pendulum-v1", disable_env_checker=True, max_episode_steps=50))
    assert type(inner).__name__ == "PendulumEnv" and limit == 50
    env = Passthrough(gym.make("CartPole-v1"))
    assert unwrap_make(env) == (env, None)
    env = gym.wrappers.ClipAction(gym.make("Pendulum-v1"))
    assert unwrap_make(env) == (env, None)


@pytest.mark.parametrize(
    ("env_id", "episode_length"),
    [("Pendulum-v1", None), ("Pendulum-v1", 60), ("CartPole-v1", None), ("CartPole-v1", 700)],
)
def test_fitnesses_equal_those_of_the_wrapped_environment(env_id: str, episode_length: int | None) -> None:
    """Time limits (the env's 200/500 steps and ``episode_length``, whichever is first) end episodes alike."""
    options: dict[str, Any] = {"seed": 5, "episode_length": episode_length, "num_actors": None}
    lean = GymNE(env_id, "Linear(obs_length, act_length)", observation_normalization=True, **options)
    full = GymNE(wrapped(env_id), "Linear(obs_length, act_length)", observation_normalization=True, **options)
    values = torch.randn(12, lean.solution_length, generator=torch.Generator().manual_seed(0))
    if env_id == "CartPole-v1":  # push towards the side the pole falls to: balances until the time limit
        values[0] = torch.tensor([0, 0, -3, -1, 0, 0, 3, 1, 0, 0])
    fitness = lean.evaluate_values(values)
    np.testing.assert_array_equal(fitness, full.evaluate_values(values))
    if env_id == "CartPole-v1":
        assert fitness[0] == 500.0  # the environment's own limit, below episode_length=700
    assert (lean.interaction_count, lean.episode_count) == (full.interaction_count, full.episode_count)
    np.testing.assert_array_equal(lean.get_observation_stats().sum, full.get_observation_stats().sum)
    assert isinstance(lean._slot_envs[0], gym.Env) and not isinstance(lean._slot_envs[0], gym.Wrapper)
    assert isinstance(full._slot_envs[0], Passthrough)
    if env_id == "Pendulum-v1":  # never terminates: every episode runs to the first limit
        assert lean.interaction_count == 12 * min(200, episode_length or 200)


@pytest.mark.parametrize(
    ("engine_us", "step_us", "slots"),
    [
        (8.0, 8.0, 64),
        (12.0, 4.6, 128),
        (8.0, 60.0, 8),
        (5.0, 60.0, 4),
        (6.0, 250.0, 1),
        (1000.0, 5.0, 128),
        (0.1, 8.0, 1),
    ],
)
def test_the_automatic_batch_size_makes_the_engine_a_small_share_of_the_steps(
    engine_us: float, step_us: float, slots: int
) -> None:
    assert choose_slots(engine_us * 1e-6, step_us * 1e-6) == slots
    if slots < AUTO_ROLLOUT_BATCH:
        assert engine_us / slots <= ENGINE_SHARE * step_us < engine_us / max(slots // 2, 1) or slots == 1


def test_the_automatic_batch_size_is_measured_once_and_changes_no_result() -> None:
    network = "Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)"
    auto = GymNE("Pendulum-v1", network, seed=2, num_actors=None, episode_length=30)
    fixed = GymNE("Pendulum-v1", network, seed=2, num_actors=None, episode_length=30, rollout_batch_size=3)
    values = torch.randn(10, auto.solution_length, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(auto.evaluate_values(values), fixed.evaluate_values(values))
    chosen = auto._auto_slots
    assert chosen is not None and 1 <= chosen <= AUTO_ROLLOUT_BATCH and chosen & (chosen - 1) == 0
    np.testing.assert_array_equal(auto.evaluate_values(values), fixed.evaluate_values(values))
    assert auto._auto_slots == chosen
    assert len(auto._slot_envs) == even_slots(10, chosen)  # a call's slots, in even waves


@pytest.mark.parametrize(
    ("jobs", "most", "slots"), [(50, 32, 25), (50, 128, 50), (200, 128, 100), (5, 128, 5), (200, 16, 16), (7, 1, 1)]
)
def test_even_slots_keep_the_waves_and_take_the_fewest_slots(jobs: int, most: int, slots: int) -> None:
    assert even_slots(jobs, most) == slots
    waves = -(-jobs // most)
    assert -(-jobs // slots) == waves  # as few waves as with ``most`` slots ...
    assert slots == 1 or -(-jobs // (slots - 1)) > waves  # ... and one slot fewer would need another
