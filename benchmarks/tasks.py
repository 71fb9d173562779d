"""The environments, policies and PGPE settings the measures share (the same on hpcne's and EvoTorch's side).

Policies follow the one-hidden-layer tanh MLPs of EvoTorch's neuroevolution guide
(``Linear(d, 32) >> Tanh() >> Linear(32, 1)``), sized like EvoTorch's gym examples: 16 hidden
units on CartPole-v1, 64 on the others. This module must import nothing but the standard
library: the EvoTorch side runs it in its own virtual environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SOLVE_TASKS", "SPEED_TASKS", "Task", "balancing_center", "mlp"]


def mlp(hidden: int) -> str:
    """The network string of a one-hidden-layer tanh MLP."""
    return f"Linear(obs_length, {hidden}) >> Tanh() >> Linear({hidden}, act_length)"


def balancing_center(hidden: int = 16) -> tuple[float, ...]:
    """Parameters of ``mlp(hidden)`` on CartPole-v1 that balance the pole: push right when angle + angular velocity > 0.

    Hidden unit 0 computes ``tanh(angle + angular velocity)``; the logits are ``(-h0, +h0)``. With
    a stdev of 0.1 around it, episodes last about 250 steps (up to 500): the regime of a run
    that has learned, where per-step costs count and per-episode costs matter less. The layout
    (``weight1, bias1, weight2, bias2``, row-major) is the same in EvoTorch and hpcne.
    """
    obs, act = 4, 2
    values = [0.0] * (obs * hidden + hidden + act * hidden + act)
    values[2] = values[3] = 1.0  # weight1[0] on (x, velocity, angle, angular velocity)
    second = obs * hidden + hidden
    values[second] = -1.0  # weight2[0, 0]
    values[second + hidden] = 1.0  # weight2[1, 0]
    return tuple(values)


@dataclass(frozen=True)
class Task:
    """A GymNE problem and the PGPE searcher that runs on it (arguments valid for EvoTorch and hpcne)."""

    env: str
    network: str
    popsize: int
    center_learning_rate: float
    stdev_learning_rate: float
    stdev_init: float
    episode_length: int | None = None
    observation_normalization: bool = False
    max_speed: float | None = None  # ClipUp's; None: twice the centre learning rate
    target: float | None = None  # mean population return that counts as solved (time to solve)
    max_generations: int = 0  # budget for time to solve
    center_init: tuple[float, ...] | None = None

    def problem_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``GymNE`` (without ``num_actors``)."""
        return {
            "env": self.env,
            "network": self.network,
            "episode_length": self.episode_length,
            "observation_normalization": self.observation_normalization,
        }

    def searcher_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``PGPE``: ClipUp, centred ranking, mirrored sampling."""
        return {
            "popsize": self.popsize,
            "center_learning_rate": self.center_learning_rate,
            "stdev_learning_rate": self.stdev_learning_rate,
            "stdev_init": self.stdev_init,
            "optimizer": "clipup",
            "optimizer_config": {"max_speed": self.max_speed or 2 * self.center_learning_rate},
            "ranking_method": "centered",
            "symmetric": True,
            "center_init": None if self.center_init is None else list(self.center_init),
        }


# Side by side with EvoTorch (popsizes as in issue 7).
SPEED_TASKS: dict[str, Task] = {
    "cartpole": Task("CartPole-v1", mlp(16), 400, 0.05, 0.1, 0.1),  # from scratch: episodes of ~12 steps
    "cartpole-balancing": Task("CartPole-v1", mlp(16), 400, 0.05, 0.1, 0.1, center_init=balancing_center()),
    "halfcheetah": Task("HalfCheetah-v5", mlp(64), 20, 0.01, 0.1, 0.05, 1000),
    "halfcheetah-obsnorm": Task("HalfCheetah-v5", mlp(64), 20, 0.01, 0.1, 0.05, 1000, observation_normalization=True),
}

# Time to solve: CartPole-v1 to a mean return of 475; MuJoCo tasks to a set score within a budget.
SOLVE_TASKS: dict[str, Task] = {
    "cartpole": Task("CartPole-v1", mlp(16), 100, 0.05, 0.1, 0.1, target=475.0, max_generations=200),
    "hopper": Task(
        "Hopper-v5", mlp(64), 20, 0.1, 0.1, 0.1, 1000, observation_normalization=True, target=500.0, max_generations=100
    ),
    "invertedpendulum": Task(
        "InvertedPendulum-v5",
        mlp(64),
        20,
        0.2,
        0.1,
        0.2,
        1000,
        observation_normalization=True,
        target=900.0,
        max_generations=100,
    ),
}
