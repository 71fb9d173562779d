"""The rollout engine steps environments under gym.make's bookkeeping wrappers, with the same results."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from hpcne.neuroevolution import GymNE
from hpcne.neuroevolution.gymne import unwrap_make


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
