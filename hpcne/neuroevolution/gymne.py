"""GymNE: evolve policies for gymnasium environments (EvoTorch's ``GymNE``)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from hpcne import timing
from hpcne.core import STREAM_EVALUATION, EvalResult, Solution
from hpcne.neuroevolution.neproblem import NEProblem, NetworkSpec
from hpcne.neuroevolution.net import ActClipLayer, ObsNormLayer, RunningStat, ensure_stateful, is_recurrent
from hpcne.neuroevolution.policies import POLICY_BACKENDS, BatchedPolicy, ModuleLoop, make_batched_policy
from hpcne.neuroevolution.quiet import quiet_env_libraries
from hpcne.neuroevolution.rollout import EpisodeSettings, RolloutResult, run_lockstep
from hpcne.seeding import derive_seed, generator_for
from hpcne.tools import as_numpy

__all__ = ["GymNE"]

EnvSpec = str | Callable[..., gym.Env]
_NOISE_KEY = 1  # extra key that separates action-noise streams from reset seeds
AUTO_ROLLOUT_BATCH = 128  # the most slots the automatic choice takes (cheap steps such as CartPole's reach it)
ENGINE_SHARE = 0.03  # the automatic choice keeps the engine's cost per lockstep step under this share of the env steps


def choose_slots(engine_seconds: float, step_seconds: float, most: int = AUTO_ROLLOUT_BATCH) -> int:
    """The automatic ``rollout_batch_size``: the fewest slots (a power of two) that make the engine cheap.

    One lockstep iteration of the rollout engine has a fixed cost that its slots share: the batched
    policy call, normalising the observations and summing their statistics, clipping the actions,
    storing the observations (a dozen small numpy calls). More slots spread it over more steps,
    but every slot adds an environment to the core's caches: stepping 16 HalfCheetah models in
    turn was measured 7% slower than stepping 1, 16 Humanoid models 14% slower than 1. So take
    the smallest power of two with ``engine_seconds / slots <= ENGINE_SHARE * step_seconds``.

    Args:
        engine_seconds: Time of one iteration of a one-slot engine around an environment that costs nothing.
        step_seconds: Time of one environment step.
        most: Upper limit.
    """
    slots = 1
    while slots < most and engine_seconds > ENGINE_SHARE * step_seconds * slots:
        slots *= 2
    return min(slots, most)


def even_slots(jobs: int, most: int) -> int:
    """The fewest slots, at most ``most``, that run ``jobs`` in as few waves as ``most`` slots do.

    With ``most`` slots a round runs ``ceil(jobs / most)`` waves of episodes, and the last one
    is short: 50 jobs on 32 slots are a wave of 32 and one of 18. 25 slots run the same two waves
    full, with fewer environments; with 64 slots or more the 50 jobs run as one wave, and every
    lockstep iteration serves twice the steps on average.
    """
    waves = -(-jobs // most)
    return -(-jobs // waves)


def _env_label(env: EnvSpec) -> str:
    return env if isinstance(env, str) else getattr(env, "__name__", repr(env))


def make_env(env: EnvSpec, env_config: Mapping[str, Any], **extra: Any) -> gym.Env:
    """Create an environment from a gymnasium id or a factory, with clear errors."""
    quiet_env_libraries(env, rendering="render_mode" in extra)
    try:
        if isinstance(env, str):
            return gym.make(env, **env_config, **extra)
        return env(**env_config, **extra)
    except gym.error.Error as err:
        raise ValueError(
            f"Could not create the environment {_env_label(env)!r}: {err} Check the id (for example "
            "'CartPole-v1') and that its package is installed (MuJoCo environments need "
            "`pip install 'hpcne[mujoco]'`)."
        ) from err


_MAKE_WRAPPERS = (gym.wrappers.TimeLimit, gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)


def unwrap_make(env: gym.Env) -> tuple[gym.Env, int | None]:
    """The environment under ``gymnasium.make``'s bookkeeping wrappers, and its TimeLimit.

    ``gym.make`` wraps every environment in TimeLimit, OrderEnforcing and (at first) a passive
    checker: three Python calls per step that change nothing once the spaces are checked and
    every episode starts with a reset, as in the rollout engine, which also applies the time
    limit itself. Stepping the inner environment saves 2-3 µs per step, 10-20% of a CartPole
    step. Any other wrapper (a user's, or ``env_config`` ones) keeps the environment as it is.

    Returns:
        The inner environment and the TimeLimit's ``max_episode_steps`` (None without one), or
        ``(env, None)`` when the chain holds another wrapper.
    """
    inner, limit = env, None
    while isinstance(inner, gym.Wrapper):
        if type(inner) not in _MAKE_WRAPPERS:
            return env, None
        if type(inner) is gym.wrappers.TimeLimit:
            limit = inner._max_episode_steps
        inner = inner.env
    return inner, limit


def _check_schedule(schedule: Any) -> tuple[float, ...] | None:
    """Validate ``alive_bonus_schedule``: ``(t, bonus)`` or ``(t0, t1, bonus)`` with ``t0 <= t1``."""
    if schedule is None:
        return None
    try:
        values = tuple(float(v) for v in schedule)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (2, 3) or (len(values) == 3 and not values[0] <= values[1]):
        raise ValueError(f"alive_bonus_schedule must be (t, bonus) or (t0, t1, bonus) with t0 <= t1; got {schedule!r}.")
    return values


class GymNE(NEProblem):
    """Maximise the total reward of a policy network in a gymnasium environment."""

    def __init__(
        self,
        env: EnvSpec | None = None,
        network: NetworkSpec | None = None,
        *,
        env_name: EnvSpec | None = None,
        network_args: Mapping[str, Any] | None = None,
        env_config: Mapping[str, Any] | None = None,
        observation_normalization: bool = False,
        num_episodes: int = 1,
        episode_length: int | None = None,
        decrease_rewards_by: float | None = None,
        alive_bonus_schedule: tuple | None = None,
        action_noise_stdev: float | None = None,
        num_actors: int | str | None = "max",
        actor_config: dict | None = None,
        num_gpus_per_actor: float | str | None = None,
        num_subbatches: int | None = None,
        subbatch_size: int | None = None,
        initial_bounds: tuple[Any, Any] | None = (-1e-5, 1e-5),
        seed: int | None = None,
        device: torch.device | str | None = None,
        rollout_batch_size: int | None = None,
        policy_backend: str = "auto",
    ) -> None:
        """Create the problem; the environment's spaces and the network are checked here.

        Args:
            env: A gymnasium id (``"CartPole-v1"``) or a function returning an environment.
            network: The policy: a network string, module, module class or function.
            env_name: Alias of ``env`` (EvoTorch's older name).
            network_args: Extra arguments/constants for the network.
            env_config: Keyword arguments for ``gymnasium.make`` (or the env function).
            observation_normalization: Normalise observations with running statistics.
            num_episodes: Episodes per evaluation; the fitness is their mean return.
            episode_length: Step limit per episode (on top of the env's own).
            decrease_rewards_by: Subtracted from every reward (removes survival bonuses).
            alive_bonus_schedule: ``(t, b)``: add ``b`` to the reward of every step from step
                ``t`` on (steps counted from 1); ``(t0, t1, b)``: add ``(t - t0) / (t1 - t0) * b``
                for ``t0 <= t < t1`` and ``b`` from step ``t1`` on (as EvoTorch).
            action_noise_stdev: Stdev of Gaussian noise added to the network's output before it
                becomes an action (before the argmax of a Discrete space or the clipping of a
                Box), in every rollout; None for no noise.
            num_actors: Workers: ``"max"`` (default, all cores), an int, or None for in-process.
            actor_config: Per-worker options (e.g. ``{"device": "cuda"}``).
            num_gpus_per_actor: GPU share per worker.
            num_subbatches: Dynamic split of populations into this many pieces.
            subbatch_size: Dynamic split of populations into pieces of this size.
            initial_bounds: Interval of the initial parameters.
            seed: Run seed; reset seeds and action noise derive from it.
            device: Device of the policy networks.
            rollout_batch_size: Environments stepped side by side per worker (1 = one solution
                at a time; None = automatic: up to 128, fewer for costly steps such as MuJoCo's,
                see `choose_slots` and `even_slots`). Results do not depend on it (bit for bit
                with the ``"numpy"`` and ``"loop"`` policy backends, which ``"auto"`` picks on the CPU).
            policy_backend: How a worker computes the actions of its ``rollout_batch_size``
                policies at each step: ``"numpy"`` (Linear/activation networks, numpy on the
                CPU), ``"torch"`` (Linear/activation networks, batched matrix products on the
                network's device), ``"vmap"`` (any module ``torch.func.vmap`` can batch,
                including hpcne's RNN/LSTM layers, on the network's device), ``"loop"`` (any
                module, one copy per slot) or ``"auto"`` (default): on the CPU ``"numpy"`` when
                the network allows it, else ``"loop"``; on a CUDA device (``device`` or the one
                the runtime maps to the worker) ``"torch"``, else ``"vmap"`` when the network
                passes its probe, else ``"loop"``. ``"numpy"`` and ``"loop"`` give the same bits
                for every ``rollout_batch_size``; ``"torch"`` and ``"vmap"`` agree with them up
                to float32 rounding only (see hpcne/neuroevolution/policies.py).
        """
        if env is not None and env_name is not None:
            raise ValueError("Give the environment once: either env or env_name, not both.")
        env = env if env is not None else env_name
        if env is None:
            raise ValueError("GymNE needs an environment: env='CartPole-v1' or a function returning one.")
        if isinstance(env, gym.Env):
            raise TypeError(
                "GymNE needs an environment id or a function that creates one (each worker builds "
                "its own); got an environment instance. Pass e.g. `lambda: MyEnv(...)` instead."
            )
        if not isinstance(env, str) and not callable(env):
            raise TypeError(f"env must be a gymnasium id or a callable; got {type(env).__name__}.")
        if network is None:
            raise ValueError("GymNE needs a network, e.g. 'Linear(obs_length, act_length)'.")
        for name, value in (("num_episodes", num_episodes), ("episode_length", episode_length)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        if rollout_batch_size is not None and (
            isinstance(rollout_batch_size, bool) or not isinstance(rollout_batch_size, int) or rollout_batch_size < 1
        ):
            raise ValueError(f"rollout_batch_size must be a positive int or None; got {rollout_batch_size!r}.")
        if policy_backend not in POLICY_BACKENDS:
            choices = ", ".join(repr(k) for k in POLICY_BACKENDS)
            raise ValueError(f"policy_backend must be one of {choices}; got {policy_backend!r}.")
        if action_noise_stdev is not None and not action_noise_stdev >= 0:
            raise ValueError(f"action_noise_stdev must be >= 0 or None; got {action_noise_stdev!r}.")

        self._env_spec = env
        self._env_config = dict(env_config or {})
        self._observation_normalization = bool(observation_normalization)
        self._num_episodes = int(num_episodes)
        self._collecting = True  # rollouts collect observation statistics (when normalizing)
        self._episode_length = None if episode_length is None else int(episode_length)
        self._decrease_rewards_by = 0.0 if decrease_rewards_by is None else float(decrease_rewards_by)
        self._alive_bonus_schedule = _check_schedule(alive_bonus_schedule)
        self._action_noise_stdev = None if not action_noise_stdev else float(action_noise_stdev)
        self._rollout_batch_size = rollout_batch_size
        self._policy_backend = policy_backend
        self._env: gym.Env | None = None
        self._slot_envs: list[gym.Env] = []  # the rollout engine's, without gym.make's wrappers
        self._slot_limit: int | None = None  # the TimeLimit those wrappers applied
        self._policy_cache: dict[int, Any] = {}
        self._auto_slots: int | None = None  # measured on first use, per process and device
        self._interaction_count = 0
        self._episode_count = 0
        self._local_delta: list[RolloutResult] | None = None

        self._obs_space, self._act_space = self._probe_spaces()
        self._obs_length = int(np.prod(self._obs_space.shape))
        discrete = isinstance(self._act_space, gym.spaces.Discrete)
        self._act_length = int(self._act_space.n) if discrete else int(np.prod(self._act_space.shape))
        self._obs_stats = RunningStat(shape=self._obs_length) if self._observation_normalization else None
        self._collected_stats = RunningStat(shape=self._obs_length) if self._observation_normalization else None

        super().__init__(
            "max",
            network,
            network_args=network_args,
            initial_bounds=initial_bounds,
            seed=seed,
            num_actors=num_actors,
            actor_config=actor_config,
            num_gpus_per_actor=num_gpus_per_actor,
            num_subbatches=num_subbatches,
            subbatch_size=subbatch_size,
            device=device,
        )
        self._check_network()

    # ------------------------------------------------------------- validation
    def _probe_spaces(self) -> tuple[gym.spaces.Box, gym.Space]:
        """Create one environment to read and check its observation and action spaces."""
        probe = make_env(self._env_spec, self._env_config)
        try:
            return self._check_spaces(probe.observation_space, probe.action_space)
        finally:
            probe.close()

    def _check_spaces(self, obs_space: gym.Space, act_space: gym.Space) -> tuple[gym.spaces.Box, gym.Space]:
        label = _env_label(self._env_spec)
        if not isinstance(obs_space, gym.spaces.Box):
            raise TypeError(
                f"{label}: GymNE needs a Box observation space; got {obs_space}. "
                "Wrap the environment (e.g. gymnasium.wrappers.FlattenObservation) to get one."
            )
        if not isinstance(act_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise TypeError(
                f"{label}: GymNE needs a Discrete or Box action space; got {act_space}. "
                "Wrap the environment to expose one of these."
            )
        return obs_space, act_space

    def _instantiate_net(self, network: NetworkSpec) -> nn.Module:
        # Rollouts call the policy with observations only: a recurrent network (EvoTorch's
        # forward(x, h) -> (y, h)) is wrapped to carry its hidden state between steps.
        net = super()._instantiate_net(network)
        return ensure_stateful(net) if is_recurrent(net) else net

    def _check_network(self) -> None:
        net = self.network
        try:
            with torch.no_grad():
                out = net(torch.zeros(self._obs_length, device=self.network_device))
        except Exception as err:
            raise ValueError(
                f"The network cannot take an observation of length obs_length={self._obs_length}: {err}\n{net}"
            ) from err
        if out.numel() != self._act_length:
            raise ValueError(
                f"The network maps {self._obs_length} observation values to {out.numel()} outputs, but the "
                f"action space {self._act_space} needs {self._act_length}. Use act_length in the network "
                "string, e.g. 'Linear(obs_length, 64) >> Tanh() >> Linear(64, act_length)'."
            )
        if self._policy_backend != "auto":  # an explicit backend must handle the network: say so now, not on a worker
            try:
                make_batched_policy(net, 1, kind=self._policy_backend, obs_length=self._obs_length)
            except ValueError as err:
                raise ValueError(f"policy_backend={self._policy_backend!r}: {err}") from err

    # -------------------------------------------------------------- constants
    @property
    def _box_act_space(self) -> gym.spaces.Box:
        """The action space as the network sees it: a Discrete(n) space is a Box of n scores."""
        if isinstance(self._act_space, gym.spaces.Discrete):
            return gym.spaces.Box(low=-np.inf, high=np.inf, shape=(self._act_length,), dtype=np.float32)
        return self._act_space

    @property
    def _network_constants(self) -> dict[str, Any]:
        """``obs_length``, ``act_length``, the spaces and their shapes (as in EvoTorch)."""
        return {
            "obs_length": self._obs_length,
            "act_length": self._act_length,
            "obs_space": self._obs_space,
            "act_space": self._box_act_space,
            "obs_shape": tuple(self._obs_space.shape),
            "act_shape": tuple(self._box_act_space.shape),
        }

    @property
    def _str_network_constants(self) -> dict[str, Any]:
        """In network strings ``obs_space`` and ``act_space`` are shapes (as in EvoTorch)."""
        return {"obs_space": tuple(self._obs_space.shape), "act_space": tuple(self._box_act_space.shape)}

    @property
    def env_id(self) -> str:
        """A readable name of the environment."""
        return _env_label(self._env_spec)

    @property
    def observation_normalization(self) -> bool:
        """Whether observations are normalised with running statistics."""
        return self._observation_normalization

    def _settings(self, num_episodes: int | None = None, decrease_rewards_by: float | None = None) -> EpisodeSettings:
        box = isinstance(self._act_space, gym.spaces.Box)
        return EpisodeSettings(
            num_episodes=self._num_episodes if num_episodes is None else int(num_episodes),
            episode_length=self._episode_length,
            decrease_rewards_by=self._decrease_rewards_by
            if decrease_rewards_by is None
            else float(decrease_rewards_by),
            alive_bonus_schedule=self._alive_bonus_schedule,
            action_noise_stdev=self._action_noise_stdev,
            discrete=not box,
            act_low=self._act_space.low.reshape(-1) if box else None,
            act_high=self._act_space.high.reshape(-1) if box else None,
            act_start=0 if box else int(self._act_space.start),
            act_shape=tuple(self._act_space.shape) if box and len(self._act_space.shape) != 1 else None,
            act_dtype=self._act_space.dtype if box else None,
        )

    # -------------------------------------------------------------- env access
    def _get_env(self) -> gym.Env:
        if self._env is None:
            self._env = make_env(self._env_spec, self._env_config)
        return self._env

    def get_env(self) -> gym.Env:
        """The problem's own environment instance (created on first use)."""
        return self._get_env()

    def _envs(self, n: int) -> list[gym.Env]:
        while len(self._slot_envs) < n:
            env, self._slot_limit = unwrap_make(make_env(self._env_spec, self._env_config))
            self._slot_envs.append(env)
        return self._slot_envs[:n]

    def _slot_settings(self) -> EpisodeSettings:
        """The episode settings of the slot environments: the time limit of their wrappers included."""
        settings = self._settings()
        if self._slot_limit is not None and (settings.episode_length or self._slot_limit) >= self._slot_limit:
            return dataclasses.replace(settings, episode_length=self._slot_limit)
        return settings

    # -------------------------------------------------------------- evaluation
    def _frozen_stats(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        stats = self._obs_stats
        if stats is None or stats.count == 0:
            return None, None
        return stats.mean, stats.stdev

    def _evaluate_local(self, values: np.ndarray, first_index: int, eval_round: int) -> EvalResult:
        """Roll out the solutions with the statistics frozen; return fitnesses and deltas."""
        if len(values) == 0:  # a rank's piece of a population smaller than the job
            return EvalResult(np.empty(0))
        if type(self)._evaluate_network is not GymNE._evaluate_network:
            return self._evaluate_with_modules(values, first_index, eval_round)
        n_jobs = values.shape[0] * self._num_episodes
        slots = self._slots_for(n_jobs, self._rollout_batch_size)
        envs = self._envs(slots)  # before _slot_settings, which needs their time limit
        with timing.rollouts(eval_round):
            result = run_lockstep(
                self._batched_policy(slots),
                envs,
                values,
                self._slot_settings(),
                **self._rollout_streams(first_index, eval_round),
            )
        return EvalResult(result.returns, result.episodes, result.interactions, result.obs_delta)

    def _evaluate_aside(self, values: np.ndarray, eval_round: int, num_episodes: int) -> np.ndarray:
        """The fitnesses of ``values`` over ``num_episodes`` episodes each, as round ``eval_round``, here.

        Nothing of the problem changes: its counters, its statistics, the episodes of its own
        rounds. No observation statistics are collected: a centre evaluation at 5 slots spent a
        third of its engine time summing ones that were thrown away.
        """
        saved = self._num_episodes, self._collecting
        self._num_episodes, self._collecting = num_episodes, False
        try:
            return self._evaluate_local(values, 0, eval_round).fitness
        finally:
            self._num_episodes, self._collecting = saved

    def _batched_policy(self, slots: int) -> BatchedPolicy:
        """This process's batched policy with ``slots`` slots (made once per size and device)."""
        policy = self._policy_cache.get(slots)
        if policy is None:
            policy = self._policy_cache[slots] = make_batched_policy(
                self.network, slots, kind=self._policy_backend, obs_length=self._obs_length
            )
        return policy

    def _rollout_streams(self, first_index: int, eval_round: int) -> dict[str, Any]:
        """The rollout engine's seeds, noise streams and frozen statistics for solutions from ``first_index`` on."""
        mean, stdev = self._frozen_stats()
        seed = self.seed
        return {
            "episode_seed": lambda sol, ep: derive_seed(seed, STREAM_EVALUATION, eval_round, first_index + sol, ep),
            "noise_rng": lambda sol, ep: generator_for(
                seed, STREAM_EVALUATION, eval_round, first_index + sol, ep, _NOISE_KEY
            ),
            "obs_mean": mean,
            "obs_stdev": stdev,
            "collect_stats": self._observation_normalization and self._collecting,
            "index_offset": first_index,
        }

    def _evaluate_with_modules(self, values: np.ndarray, first_index: int, eval_round: int) -> EvalResult:
        """The per-solution path for subclasses that override ``_evaluate_network``."""
        self._local_delta = []
        try:
            fitness = super()._evaluate_local(values, first_index, eval_round).fitness
            parts = self._local_delta
        finally:
            self._local_delta = None
        deltas = [p.obs_delta for p in parts if p.obs_delta is not None]
        return EvalResult(
            fitness,
            episodes=sum(p.episodes for p in parts),
            interactions=sum(p.interactions for p in parts),
            obs_delta=np.sum(deltas, axis=0) if deltas else None,
        )

    def _evaluate_network(self, policy: nn.Module) -> float | torch.Tensor:
        """The mean return of ``policy`` over ``num_episodes`` episodes."""
        return self.run(policy, update_stats=True)["cumulative_reward"]

    def run(
        self,
        policy: nn.Module | torch.Tensor | np.ndarray | Solution,
        *,
        update_stats: bool = False,
        visualize: bool = False,
        num_episodes: int | None = None,
        decrease_rewards_by: float | None = None,
    ) -> dict[str, Any]:
        """Run a policy (a module or a parameter vector) in the problem's environment.

        Observations are normalised with the problem's statistics unless the policy starts with
        its own ObsNormLayer (as :meth:`to_policy` builds it).

        Args:
            policy: The policy module, or a parameter vector (tensor, array or Solution).
            update_stats: Count the steps and episodes and collect observation statistics.
            visualize: Render the episodes: in a window when there is a display, otherwise into
                a GIF (see :meth:`visualize`).
            num_episodes: Episodes to run (default: the problem's ``num_episodes``).
            decrease_rewards_by: Override the reward offset.

        Returns:
            ``cumulative_reward`` (mean over episodes) and ``interaction_count`` (total steps);
            with ``visualize`` and no display also ``path``, the GIF written.
        """
        if visualize:
            return self.visualize(
                policy, update_stats=update_stats, num_episodes=num_episodes, decrease_rewards_by=decrease_rewards_by
            )
        return self._run_in(self._get_env(), policy, update_stats, num_episodes, decrease_rewards_by)

    def _run_in(
        self,
        env: gym.Env,
        policy: nn.Module | torch.Tensor | np.ndarray | Solution,
        update_stats: bool,
        num_episodes: int | None,
        decrease_rewards_by: float | None,
    ) -> dict[str, Any]:
        """Run ``policy`` for some episodes in ``env``; see :meth:`run`."""
        if not isinstance(policy, nn.Module):
            policy = self.make_net(policy)
        normalizes_itself = isinstance(policy, nn.Sequential) and isinstance(policy[0], ObsNormLayer)
        mean, stdev = (None, None) if normalizes_itself else self._frozen_stats()
        settings = self._settings(num_episodes, decrease_rewards_by)
        index = 0
        if self._eval_position is not None:  # inside an evaluation: seeds of this solution's rollouts
            eval_round, index = self._eval_position
            seed = self.seed

            def episode_seed(_sol: int, ep: int) -> int:
                return derive_seed(seed, STREAM_EVALUATION, eval_round, index, ep)

            def noise(_sol: int, ep: int) -> np.random.Generator:
                return generator_for(seed, STREAM_EVALUATION, eval_round, index, ep, _NOISE_KEY)
        else:
            base = int(torch.randint(2**62, (1,), generator=self._generator))

            def episode_seed(_sol: int, ep: int) -> int:
                return derive_seed(base, ep)

            def noise(_sol: int, ep: int) -> np.random.Generator:
                return generator_for(base, ep, _NOISE_KEY)

        result = run_lockstep(
            _SingleModule(policy),
            [env],
            np.zeros((1, 0), np.float32),
            settings,
            episode_seed=episode_seed,
            noise_rng=noise,
            obs_mean=mean,
            obs_stdev=stdev,
            collect_stats=update_stats and self._observation_normalization,
            index_offset=index,
        )
        if update_stats:
            if self._local_delta is not None:
                self._local_delta.append(result)
            else:
                self._apply_eval_result(
                    EvalResult(result.returns, result.episodes, result.interactions, result.obs_delta)
                )
        return {"cumulative_reward": float(result.returns[0]), "interaction_count": result.interactions}

    def _apply_eval_result(self, result: EvalResult) -> None:
        self._episode_count += int(result.episodes)
        self._interaction_count += int(result.interactions)
        if result.obs_delta is not None and self._obs_stats is not None:
            delta = RunningStat.unpack(result.obs_delta, self._obs_length)
            self._obs_stats.update(delta)
            self._collected_stats.update(delta)

    def _on_worker_start(self) -> None:
        self._env, self._slot_envs, self._policy_cache, self._auto_slots = None, [], {}, None

    def _use_device(self, device: torch.device) -> None:
        super()._use_device(device)
        self._policy_cache, self._auto_slots = {}, None

    def _measure_auto_slots(self) -> int:
        """The automatic number of slots, measured on first use here (see `choose_slots`)."""
        if self._auto_slots is None:
            try:
                engine_time, step_time = self._time_engine_and_step()
            except Exception:  # the rollout that follows meets the same error and reports it with its solution
                return AUTO_ROLLOUT_BATCH
            self._auto_slots = choose_slots(engine_time, step_time)
        return self._auto_slots

    def _slots_for(self, jobs: int, fixed: int | None) -> int:
        """The slots for a call of ``jobs`` jobs: at most ``fixed``, or (None) the measured choice in even waves."""
        return min(jobs, fixed) if fixed else even_slots(jobs, self._measure_auto_slots())

    def _time_engine_and_step(self, repeats: int = 5, calls: int = 16) -> tuple[float, float]:
        """Seconds per one-slot engine iteration and per env step (best of ``repeats`` runs of ``calls``).

        The engine is timed by :meth:`_engine_timer`. The steps take a fixed action in a slot
        environment; every rollout resets it with its own seed, so this changes no result.
        """
        env = self._envs(1)[0]
        engine = self._engine_timer(1, calls)
        space = self._act_space
        if isinstance(space, gym.spaces.Box):
            action: Any = np.clip(np.zeros(space.shape, space.dtype), space.low, space.high)
        else:
            action = space.start
        env.reset(seed=0)
        step_time = engine_time = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(calls):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
            step_time = min(step_time, (time.perf_counter() - started) / calls)
            engine_time = min(engine_time, engine())
        return engine_time, step_time

    def _engine_timer(self, slots: int, calls: int) -> Callable[[], float]:
        """A function that times ``calls`` lockstep iterations of the engine at ``slots`` slots, per iteration.

        The engine runs this problem's policy, normalization and statistics around environments
        with its spaces whose steps cost nothing (:class:`_FreeEnv`); it is run once here, to
        allocate what the timed runs reuse.
        """
        policy = make_batched_policy(self.network, slots, kind=self._policy_backend, obs_length=self._obs_length)
        free = [_FreeEnv(self._obs_space, self._act_space) for _ in range(slots)]
        params = np.zeros((slots, self.solution_length), self.wire_dtype)
        settings = dataclasses.replace(self._settings(), num_episodes=1, episode_length=calls, action_noise_stdev=None)
        normalizing = self._observation_normalization
        mean, stdev = (np.zeros(self._obs_length), np.ones(self._obs_length)) if normalizing else (None, None)

        def engine() -> float:
            started = time.perf_counter()
            run_lockstep(
                policy,
                free,
                params,
                settings,
                episode_seed=lambda _sol, _ep: None,
                obs_mean=mean,
                obs_stdev=stdev,
                collect_stats=normalizing,
            )
            return (time.perf_counter() - started) / calls

        engine()
        return engine

    def _sync_buffer(self) -> np.ndarray:
        return self._obs_stats.pack() if self._obs_stats is not None else np.empty(0)

    def _load_sync_buffer(self, buffer: np.ndarray) -> None:
        if self._obs_stats is not None:
            self._obs_stats = RunningStat.unpack(buffer, self._obs_length)

    # ------------------------------------------------------------ visualizing
    def visualize(
        self,
        policy: nn.Module | torch.Tensor | np.ndarray | Solution,
        *,
        update_stats: bool = False,
        num_episodes: int | None = 1,
        decrease_rewards_by: float | None = None,
        output: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        """Show the policy in a window, or, without a display, write a video (GIF or MP4).

        Args:
            policy: The policy module or a parameter vector.
            update_stats: Count the steps and episodes and collect observation statistics.
            num_episodes: Episodes to show.
            decrease_rewards_by: Override the reward offset.
            output: Where to write the video, .gif or .mp4 (forces a file; default
                ``<env>-rollout.gif`` in the working directory when there is no display).

        Returns:
            The :meth:`run` results, plus ``"path"`` when a file was written.
        """
        has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if output is None and has_display:
            env = make_env(self._env_spec, self._env_config, render_mode="human")
            try:
                return self._run_in(env, policy, update_stats, num_episodes, decrease_rewards_by)
            finally:
                env.close()
        from hpcne.io.video import VideoWriter, check_video_path  # hpcne.io loads pandas: not in every worker

        path = check_video_path(output or f"{self.env_id.replace('/', '_')}-rollout.gif")
        env = make_env(self._env_spec, self._env_config, render_mode="rgb_array")
        try:
            with VideoWriter(path, fps=env.metadata.get("render_fps") or 30, label=self.env_id) as video:
                recorder = _FrameRecorder(env, video.append)
                results = self._run_in(recorder, policy, update_stats, num_episodes, decrease_rewards_by)
        finally:
            env.close()
        print(f"hpcne: wrote {video.frames} frames of {self.env_id} to {path}")
        return {**results, "path": str(path)}

    # ---------------------------------------------------------------- policies
    def to_policy(self, x: Any, *, trainable_stats: bool = False, clip_actions: bool = True) -> nn.Module:
        """A standalone policy module: [observation normalization] >> network >> [action clipping]."""
        layers: list[nn.Module] = [self.make_net(x)]
        if self._obs_stats is not None and self._obs_stats.count > 0:
            layers.insert(0, ObsNormLayer(self._obs_stats, trainable_stats=trainable_stats))
        if clip_actions and isinstance(self._act_space, gym.spaces.Box):
            layers.append(ActClipLayer(self._act_space))
        return layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def save_solution(self, x: Any, fname: str | os.PathLike) -> Path:
        """Save a solution and what is needed to run it to an HDF5 file (plain arrays, no pickle).

        Datasets: ``values`` (the parameters) and, with observation normalization, ``obs_stats``
        (a packed RunningStat), ``obs_mean`` and ``obs_stdev``. Attributes: the environment, the
        network, ``obs_length``, ``act_length``, the interaction and episode counts and the
        hpcne version.

        Args:
            x: The parameters: a tensor, an array, a sequence of numbers or a :class:`Solution`.
            fname: The file to write.

        Returns:
            The path written.
        """
        import h5py

        import hpcne

        values = as_numpy(x.values if isinstance(x, Solution) else x, np.float32).reshape(-1)
        if values.size != self.solution_length:
            raise ValueError(
                f"The policy has {self.solution_length} parameters but {values.size} values were given; "
                "pass one solution of this problem."
            )
        path = Path(fname)
        with h5py.File(path, "w") as f:
            f["values"] = values
            if self._obs_stats is not None:
                f["obs_stats"] = self._obs_stats.pack()
                f["obs_mean"] = self._obs_stats.mean
                f["obs_stdev"] = self._obs_stats.stdev
            f.attrs.update(
                env=self.env_id,
                network=str(self._original_network) if isinstance(self._original_network, str) else repr(self.network),
                obs_length=self._obs_length,
                act_length=self._act_length,
                interaction_count=self._interaction_count,
                episode_count=self._episode_count,
                hpcne_version=hpcne.__version__,
            )
        return path

    # ----------------------------------------------------------- stats, counts
    def _ensure_obsnorm(self) -> RunningStat:
        if self._obs_stats is None:
            raise ValueError(
                "Observation statistics exist only with observation normalization; create the problem "
                "with observation_normalization=True."
            )
        return self._obs_stats

    def get_observation_stats(self) -> RunningStat:
        """The observation statistics used for normalization."""
        return self._ensure_obsnorm()

    def set_observation_stats(self, rs: RunningStat) -> None:
        """Replace the observation statistics by a copy of ``rs``."""
        self._ensure_obsnorm()
        if rs.count > 0 and rs.shape != (self._obs_length,):
            raise ValueError(
                f"The observation statistics have shape {rs.shape} but observations of {self.env_id} have "
                f"{self._obs_length} values; pass statistics collected on this environment."
            )
        self._obs_stats = rs.copy() if rs.count > 0 else RunningStat(shape=self._obs_length)

    def update_observation_stats(self, rs: RunningStat) -> None:
        """Merge another RunningStat into the observation statistics (its shape must match)."""
        self._ensure_obsnorm().update(rs)

    def pop_observation_stats(self) -> RunningStat:
        """Return the statistics collected since the last pop, and clear them."""
        self._ensure_obsnorm()
        result, self._collected_stats = self._collected_stats, RunningStat(shape=self._obs_length)
        return result

    @property
    def episode_count(self) -> int:
        """Episodes completed in evaluations."""
        return self._episode_count

    @episode_count.setter
    def episode_count(self, n: int) -> None:
        self._episode_count = int(n)

    @property
    def interaction_count(self) -> int:
        """Environment steps taken in evaluations."""
        return self._interaction_count

    @interaction_count.setter
    def interaction_count(self, n: int) -> None:
        self._interaction_count = int(n)

    def set_episode_count(self, n: int) -> None:
        """Set the episode counter."""
        self.episode_count = n

    def set_interaction_count(self, n: int) -> None:
        """Set the interaction counter."""
        self.interaction_count = n

    def _extra_status(self, batch: Any = None) -> dict[str, Any]:
        return {
            "total_interaction_count": self._interaction_count,
            "total_episode_count": self._episode_count,
        }

    def state_dict(self) -> dict[str, Any]:
        """The problem state plus counters and observation statistics."""
        state = super().state_dict()
        state["interaction_count"] = self._interaction_count
        state["episode_count"] = self._episode_count
        if self._obs_stats is not None:
            state["obs_stats"] = self._obs_stats.pack()
            state["collected_stats"] = self._collected_stats.pack()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self._interaction_count = int(state["interaction_count"])
        self._episode_count = int(state["episode_count"])
        if self._obs_stats is not None:
            if "obs_stats" not in state:
                raise ValueError("The saved state has no observation statistics but normalization is on.")
            self._obs_stats = RunningStat.unpack(state["obs_stats"], self._obs_length)
            self._collected_stats = RunningStat.unpack(state["collected_stats"], self._obs_length)


class _SingleModule(ModuleLoop):
    """A one-slot batched policy around an existing module (no copy)."""

    def __init__(self, net: nn.Module) -> None:
        self.slots = 1
        self._nets = [net]
        self._device = next((p.device for p in net.parameters()), torch.device("cpu"))

    def load(self, slot: int, params: np.ndarray) -> None:
        """The module already holds its parameters."""


class _FreeEnv(gym.Env):
    """An environment with given spaces whose steps cost nothing: it shows what the engine costs around them."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self._obs = np.zeros(observation_space.shape, observation_space.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """The same zero observation every time."""
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Nothing happens, and the episode never ends."""
        return self._obs, 0.0, False, False, {}


class _FrameRecorder(gym.Wrapper):
    """Hands every rendered frame of an ``rgb_array`` environment to ``sink``."""

    def __init__(self, env: gym.Env, sink: Callable[[np.ndarray], None]) -> None:
        super().__init__(env)
        self._sink = sink

    def reset(self, **kwargs: Any) -> Any:
        out = self.env.reset(**kwargs)
        self._sink(self.env.render())
        return out

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self._sink(self.env.render())
        return out
