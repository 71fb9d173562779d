"""Tiny deterministic environments whose returns can be checked by hand."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch


class ConstantRewardEnv(gym.Env):
    """Reward ``reward`` every step; terminates after ``horizon`` steps; observation ``[t, 1]``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, horizon: int = 10, reward: float = 1.0, render_mode: str | None = None) -> None:
        self.horizon = horizon
        self.reward = reward
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t, 1.0], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.action_space.contains(action), action
        self.t += 1
        return self._obs(), self.reward, self.t >= self.horizon, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((16, 24, 3), np.uint8)
        frame[:, : min(self.t, 24), 0] = 255  # a red bar growing with t
        return frame


class EchoEnv(gym.Env):
    """Observations ``[t + 1, 10 (t + 1)]`` (fixed, seed-independent); reward = the action's first value.

    So a rollout's return is the sum of the policy outputs: it shows exactly which (normalised)
    observations the policy received.
    """

    def __init__(self, horizon: int = 5) -> None:
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1e6, 1e6, (1,), np.float32)
        self.t = 0

    def observation(self, t: int) -> np.ndarray:
        return np.array([t + 1, 10 * (t + 1)], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.observation(0), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self.observation(self.t), float(np.asarray(action).reshape(-1)[0]), self.t >= self.horizon, False, {}


class SpaceEnv(gym.Env):
    """An environment with the given spaces, for testing the space checks."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        return self.observation_space.sample(), 0.0, True, False, {}


class ActionRewardEnv(gym.Env):
    """Constant observation; the reward is the action (its sum for a Box); ``horizon`` steps."""

    def __init__(self, action_space: gym.Space, horizon: int = 3) -> None:
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = action_space
        self.actions: list[Any] = []
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.ones(2, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.action_space.contains(action), f"{action!r} is not in {self.action_space}"
        self.actions.append(action)
        self.t += 1
        return np.ones(2, np.float32), float(np.sum(action)), self.t >= self.horizon, False, {}


CARTPOLE_NET = "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)"

GYM_CONFIGS: dict[str, dict[str, Any]] = {  # GymNE settings that exercise the rollout options
    "cartpole-obsnorm-2-episodes": dict(
        env="CartPole-v1", network=CARTPOLE_NET, observation_normalization=True, num_episodes=2, episode_length=40
    ),
    "pendulum-noise-obsnorm": dict(
        env="Pendulum-v1",
        network="Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)",
        observation_normalization=True,
        action_noise_stdev=0.5,
        num_episodes=2,
        episode_length=15,
    ),
    "cartpole-reward-shaping": dict(
        env="CartPole-v1", network=CARTPOLE_NET, decrease_rewards_by=0.5, alive_bonus_schedule=(3, 8, 1.0)
    ),
    "cartpole-recurrent": dict(
        env="CartPole-v1", network="RNN(obs_length, 4) >> Linear(4, act_length)", observation_normalization=True
    ),
}


class CountdownEnv(gym.Env):
    """Observation ``[t, 1]``; reward ``1 + t`` for step ``t`` (1-based); the episode ends at the first
    action 1 after step 2, or is truncated at ``horizon``. Seed-independent, so episode lengths
    depend on the policy alone."""

    def __init__(self, horizon: int = 12) -> None:
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        obs = np.array([self.t, 1.0], np.float32)
        return obs, 1.0 + self.t, bool(action == 1 and self.t > 2), self.t >= self.horizon, {}


class CountdownVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` CountdownEnvs that autoreset by themselves (``NEXT_STEP`` or ``SAME_STEP``).

    A NEXT_STEP reset step returns the reward 1000, so that counting it shows in a return."""

    def __init__(self, num_envs: int = 1, autoreset: str = "NextStep", horizon: int = 12) -> None:
        self.num_envs = num_envs
        self.horizon = horizon
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode(autoreset)}
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.t = np.zeros(num_envs, np.int64)
        self.done = np.zeros(num_envs, bool)

    def _obs(self) -> np.ndarray:
        return np.stack([self.t, np.ones(self.num_envs)], axis=1).astype(np.float32)

    def reset(self, *, seed: Any = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        self.t[:] = 0
        self.done[:] = False
        return self._obs(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        assert actions.shape == (self.num_envs,), actions
        resetting = self.done.copy()
        self.t += 1
        terminated = (np.asarray(actions) == 1) & (self.t > 2)
        truncated = self.t >= self.horizon
        reward = 1.0 + self.t.astype(np.float64)
        info: dict[str, Any] = {}
        if self.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP:
            self.t[resetting] = 0
            reward[resetting] = 1000.0
            terminated[resetting] = truncated[resetting] = False
            self.done = terminated | truncated
            return self._obs(), reward, terminated, truncated, info
        done = terminated | truncated  # SAME_STEP: the final observation goes into info
        info = {"final_obs": np.array(list(self._obs()), dtype=object), "_final_obs": done}
        self.t[done] = 0
        return self._obs(), reward, terminated, truncated, info


class TorchVectorEnv(gym.vector.VectorWrapper):
    """A vector env speaking torch on ``device``: observations, rewards and done flags are tensors there.

    Wraps a numpy vector env (the same dynamics, so its results can be compared with the numpy
    path); every action must arrive as a tensor on ``device``, never as a numpy array.
    ``final_obs`` of a SAME_STEP env becomes one tensor.
    """

    def __init__(self, env: gym.vector.VectorEnv, device: str = "cpu") -> None:
        super().__init__(env)
        self.device = torch.device(device)
        self.steps = 0

    def _tensor(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), device=self.device)

    def reset(self, *, seed: Any = None, options: dict | None = None) -> tuple[torch.Tensor, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._tensor(obs), info

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        assert isinstance(actions, torch.Tensor) and actions.device == self.device, type(actions)
        self.steps += 1
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        if "final_obs" in info:
            info = {
                **info,
                "final_obs": torch.stack([self._tensor(np.asarray(o, np.float32)) for o in info["final_obs"]]),
            }
        return self._tensor(obs), self._tensor(reward), self._tensor(terminated), self._tensor(truncated), info


def torch_vector_factory(make: Any, device: str = "cpu") -> Any:
    """A VecGymNE env factory: ``make(num_envs, **config)``'s numpy vector env, speaking torch on ``device``."""
    return lambda num_envs, **config: TorchVectorEnv(make(num_envs, **config), device)


class TorchCartPoleVectorEnv(gym.vector.VectorEnv):
    """gymnasium's ``CartPoleVectorEnv`` (NEXT_STEP autoreset) computed in torch float64 on ``device``.

    Start states are drawn as gymnasium draws them (``np_random.uniform(-0.05, 0.05, (4, k))``) and
    uploaded, so with the same seed both envs start alike; the dynamics are the same operations, so
    trajectories agree up to the rounding of torch's and numpy's ``sin``/``cos``.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, device: str = "cpu", max_episode_steps: int = 500) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        high = np.array([4.8, np.finfo(np.float32).max, 0.418, np.finfo(np.float32).max], np.float32)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.state = torch.zeros((4, num_envs), dtype=torch.float64, device=self.device)
        self.steps = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.prev_done = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    def _starts(self, k: int) -> torch.Tensor:
        return torch.from_numpy(self.np_random.uniform(low=-0.05, high=0.05, size=(4, k))).to(self.device)

    def reset(self, *, seed: Any = None, options: dict | None = None) -> tuple[torch.Tensor, dict]:
        super().reset(seed=seed)
        self.state = self._starts(self.num_envs)
        self.steps.zero_()
        self.prev_done.zero_()
        return self.state.T.to(torch.float32), {}

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        assert isinstance(actions, torch.Tensor) and actions.device == self.device, type(actions)
        gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
        total_mass, polemass_length = masspole + masscart, masspole * length
        x, x_dot, theta, theta_dot = self.state
        force = torch.sign(actions.to(torch.float64) - 0.5) * force_mag
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + polemass_length * torch.square(theta_dot) * sintheta) / total_mass
        thetaacc = (gravity * sintheta - costheta * temp) / (
            length * (4.0 / 3.0 - masspole * torch.square(costheta) / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        x, x_dot = x + tau * x_dot, x_dot + tau * xacc
        theta, theta_dot = theta + tau * theta_dot, theta_dot + tau * thetaacc
        self.state = torch.stack((x, x_dot, theta, theta_dot))
        terminated = (x < -2.4) | (x > 2.4) | (theta < -12 * 2 * np.pi / 360) | (theta > 12 * 2 * np.pi / 360)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps
        reward = torch.ones(self.num_envs, dtype=torch.float32, device=self.device)
        done = self.prev_done
        if done.any():  # autoreset, the step after an episode ended
            self.state[:, done] = self._starts(int(done.sum()))
            self.steps[done] = 0
            reward[done] = 0.0
            terminated[done] = truncated[done] = False
        self.prev_done = terminated | truncated
        return self.state.T.to(torch.float32), reward, terminated, truncated, {}
