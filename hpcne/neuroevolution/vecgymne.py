"""VecGymNE: evaluate whole population pieces on one gymnasium VectorEnv (EvoTorch's ``VecGymNE``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import concatenate

from hpcne.core import STREAM_EVALUATION, EvalResult
from hpcne.neuroevolution.gymne import GymNE, _env_label, make_env, unwrap_make
from hpcne.neuroevolution.neproblem import NetworkSpec
from hpcne.neuroevolution.vecrollout import SCHEDULES, autoreset_mode, run_vector
from hpcne.seeding import derive_seed

__all__ = ["DEFAULT_NUM_ENVS", "SlotVectorEnv", "VecGymNE", "is_vector_factory", "make_vector_env"]

DEFAULT_NUM_ENVS = 64  # sub-environments per process of a vector env that autoresets, when max_num_envs is None
_WAVE_KEY = 2  # extra key that separates wave seeds from episode seeds and action noise


def is_vector_factory(env: Any) -> bool:
    """Whether a callable ``env`` builds vector environments: its signature names ``num_envs``."""
    try:
        return "num_envs" in inspect.signature(env).parameters
    except (TypeError, ValueError):
        return False


class SlotVectorEnv(gym.vector.SyncVectorEnv):
    """Gymnasium's sync vector env (``autoreset_mode=DISABLED``) without the per-step costs hpcne does not need.

    The sub-environments are made without ``gymnasium.make``'s bookkeeping wrappers (see
    :func:`~hpcne.neuroevolution.gymne.unwrap_make`; their TimeLimit is :attr:`max_episode_steps`,
    which VecGymNE applies itself, as GymNE does); :meth:`step` neither merges the
    sub-environments' info dicts (VecGymNE reads none) nor copies its results. A plain sync vector
    env of 4 HalfCheetah-v5 sub-environments spends ~12 µs per sub-environment step on those
    (cProfile), 10-15% of a MuJoCo step.
    """

    def __init__(self, make: Callable[[], gym.Env], num_envs: int) -> None:
        envs_and_limits = [unwrap_make(make()) for _ in range(num_envs)]
        self.max_episode_steps = envs_and_limits[0][1]
        super().__init__([lambda env=env: env for env, _ in envs_and_limits], autoreset_mode=AutoresetMode.DISABLED)

    def _add_info(self, vector_infos: dict[str, Any], env_info: dict[str, Any], env_num: int) -> dict[str, Any]:
        return vector_infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-environment (no autoreset); the arrays returned are overwritten by the next step."""
        obs, rewards, terminations, truncations = self._env_obs, self._rewards, self._terminations, self._truncations
        for i, env in enumerate(self.envs):
            obs[i], rewards[i], terminations[i], truncations[i], _ = env.step(actions[i])
        self._observations = concatenate(self.single_observation_space, obs, self._observations)
        return self._observations, rewards, terminations, truncations, {}


def make_vector_env(
    env: str | Callable[..., Any], env_config: Mapping[str, Any], num_envs: int
) -> gym.vector.VectorEnv:
    """A VectorEnv of ``num_envs`` copies of ``env``.

    A gymnasium id uses its registered vector entry point when it has one (e.g. CartPole-v1's
    numpy ``CartPoleVectorEnv``), otherwise a :class:`SlotVectorEnv` (a sync vector env with
    ``autoreset_mode=DISABLED``: hpcne resets each sub-environment itself, with its job's seed).
    A callable with a ``num_envs`` parameter is called as ``env(num_envs=n, **env_config)`` and
    must return a VectorEnv; any other callable makes scalar environments, wrapped like an id's.
    """
    label = _env_label(env)
    try:
        if isinstance(env, str) and gym.spec(env).vector_entry_point is not None:
            return gym.make_vec(env, num_envs, vectorization_mode="vector_entry_point", **env_config)
        if isinstance(env, str) or not is_vector_factory(env):
            return SlotVectorEnv(lambda: make_env(env, env_config), num_envs)
        venv = env(num_envs=num_envs, **env_config)
    except gym.error.Error as err:
        raise ValueError(
            f"Could not create the vector environment {label!r}: {err} Check the id (for example "
            "'CartPole-v1') and that its package is installed."
        ) from err
    if not isinstance(venv, gym.vector.VectorEnv) or venv.num_envs != num_envs:
        raise TypeError(
            f"The vector environment factory {label!r} must return a gymnasium.vector.VectorEnv with "
            f"num_envs={num_envs}; got {venv!r}."
        )
    return venv


class VecGymNE(GymNE):
    """Maximise the total reward of a policy network, evaluating many solutions on one vector environment.

    Each process (the main one, a pool worker or an MPI rank) steps its piece of the population
    on one ``gymnasium.vector.VectorEnv``: one batched policy call and one ``VectorEnv.step`` per
    step for all its sub-environments. Everything else (observation normalization, counters,
    checkpoints, ``to_policy``, ``run``, the parallel layouts) is GymNE's. See docs/VECTORIZED.md.
    """

    def __init__(
        self,
        env: str | Callable[..., Any],
        network: NetworkSpec,
        *,
        env_config: Mapping[str, Any] | None = None,
        max_num_envs: int | None = None,
        network_args: Mapping[str, Any] | None = None,
        observation_normalization: bool = False,
        decrease_rewards_by: float | None = None,
        alive_bonus_schedule: tuple | None = None,
        action_noise_stdev: float | None = None,
        num_episodes: int = 1,
        episode_length: int | None = None,
        device: torch.device | str | None = None,
        num_actors: int | str | None = None,
        num_gpus_per_actor: float | str | None = None,
        num_subbatches: int | None = None,
        subbatch_size: int | None = None,
        actor_config: dict | None = None,
        initial_bounds: tuple[Any, Any] | None = (-1e-5, 1e-5),
        seed: int | None = None,
        policy_backend: str = "auto",
        schedule: str = "waves",
    ) -> None:
        """Create the problem; the environment's spaces and the network are checked here.

        Args:
            env: A gymnasium id (``"CartPole-v1"``; EvoTorch's ``"gym::CartPole-v1"`` is accepted),
                a function returning a scalar environment, or a function with a ``num_envs``
                parameter returning a VectorEnv (see :func:`make_vector_env`).
            network: The policy: a network string, module, module class or function.
            env_config: Keyword arguments for the environment (or the functions).
            max_num_envs: Sub-environments per process. With per-job resets (sync vector envs)
                results do not depend on it: fewer are made when a process has fewer episodes to
                run, and None (default) takes GymNE's automatic ``rollout_batch_size`` (up to 128,
                fewer for costly steps such as MuJoCo's). With a vector env that autoresets by
                itself (a vector entry point such as CartPole-v1's) every process makes exactly
                this many (None: 64), and the episodes' starting states depend on it
                (docs/VECTORIZED.md).
            network_args: Extra arguments/constants for the network.
            observation_normalization: Normalise observations with running statistics.
            decrease_rewards_by: Subtracted from every reward.
            alive_bonus_schedule: As in :class:`GymNE`.
            action_noise_stdev: Stdev of Gaussian noise added to the network's output.
            num_episodes: Episodes per evaluation; the fitness is their mean return.
            episode_length: Step limit per episode (on top of the env's own).
            device: Device of the policy networks.
            num_actors: Workers: None (default, in-process: the vector env is the parallelism),
                an int or ``"max"``; under an MPI launcher each rank steps one vector env.
            num_gpus_per_actor: GPU share per worker.
            num_subbatches: Dynamic split of populations into this many pieces.
            subbatch_size: Dynamic split of populations into pieces of this size.
            actor_config: Per-worker options.
            initial_bounds: Interval of the initial parameters.
            seed: Run seed; reset seeds and action noise derive from it.
            policy_backend: How the policies of all sub-environments are batched (see :class:`GymNE`).
            schedule: With a vector env that autoresets by itself: ``"waves"`` (default; results
                do not depend on the layout, but the sub-environments of a wave whose episodes
                ended idle until its longest episode ends) or ``"refill"`` (a sub-environment
                starts the next episode at its autoreset: faster when episode lengths differ, but
                the episodes' starting states, so the results, depend on how the population is
                split over workers). Vector envs with per-job resets ignore it.
        """
        if isinstance(env, str) and "::" in env:
            kind, _, name = env.partition("::")
            if kind not in ("gym", "gymnasium"):
                raise ValueError(f"VecGymNE runs gymnasium environments; {env!r} names a {kind!r} one.")
            env = name
        if max_num_envs is not None and (
            isinstance(max_num_envs, bool) or not isinstance(max_num_envs, int) or max_num_envs < 1
        ):
            raise ValueError(f"max_num_envs must be a positive int or None; got {max_num_envs!r}.")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}.")
        self._max_num_envs = max_num_envs
        self._schedule = schedule
        self._venv: gym.vector.VectorEnv | None = None
        self._per_job_resets = True  # set by _probe_spaces
        super().__init__(
            env,
            network,
            network_args=network_args,
            env_config=env_config,
            observation_normalization=observation_normalization,
            num_episodes=num_episodes,
            episode_length=episode_length,
            decrease_rewards_by=decrease_rewards_by,
            alive_bonus_schedule=alive_bonus_schedule,
            action_noise_stdev=action_noise_stdev,
            num_actors=num_actors,
            actor_config=actor_config,
            num_gpus_per_actor=num_gpus_per_actor,
            num_subbatches=num_subbatches,
            subbatch_size=subbatch_size,
            initial_bounds=initial_bounds,
            seed=seed,
            device=device,
            policy_backend=policy_backend,
        )

    @property
    def max_num_envs(self) -> int | None:
        """Sub-environments per process (at most, with per-job resets); None: automatic."""
        return self._max_num_envs

    @property
    def schedule(self) -> str:
        """How a vector env that autoresets runs the episodes: ``"waves"`` or ``"refill"``."""
        return self._schedule

    @property
    def per_job_resets(self) -> bool:
        """Whether each episode starts from its own seed (GymNE's), rather than from its wave's."""
        return self._per_job_resets

    def _probe_spaces(self) -> tuple[gym.spaces.Box, gym.Space]:
        """Create a one-env vector environment to read its single spaces and its autoreset mode."""
        probe = make_vector_env(self._env_spec, self._env_config, 1)
        try:
            mode = autoreset_mode(probe)
            self._per_job_resets = mode == AutoresetMode.DISABLED
            return self._check_spaces(probe.single_observation_space, probe.single_action_space)
        finally:
            probe.close()

    def _get_env(self) -> gym.Env:
        if is_vector_factory(self._env_spec):
            raise TypeError(
                f"{self.env_id} makes vector environments only; run() and visualize() need a scalar one. "
                "Evaluate the policy with a GymNE on the scalar environment instead."
            )
        return super()._get_env()

    def _vector_env(self, num_jobs: int) -> gym.vector.VectorEnv:
        """This process's vector env: ``max_num_envs`` sub-environments, fewer for fewer per-job-reset jobs.

        A vector env that autoresets always has ``max_num_envs``: the episodes' starting states
        depend on it, so a piece of the population must meet the same size on every worker.
        """
        if self._per_job_resets:  # the size changes no result: GymNE's automatic choice, measured here
            size = self._slots_for(num_jobs, self._max_num_envs)
        else:
            size = self._max_num_envs or DEFAULT_NUM_ENVS
        if self._venv is None or self._venv.num_envs < size:
            if self._venv is not None:
                self._venv.close()
            self._venv = make_vector_env(self._env_spec, self._env_config, size)
            self._slot_limit = getattr(self._venv, "max_episode_steps", None)  # applied by _slot_settings
        return self._venv

    def _on_worker_start(self) -> None:
        super()._on_worker_start()
        self._venv = None  # a forked worker must not step its parent's environments

    def _evaluate_local(self, values: np.ndarray, first_index: int, eval_round: int) -> EvalResult:
        """Roll out the solutions on the vector env with the statistics frozen; return fitnesses and deltas."""
        if len(values) == 0:
            return EvalResult(np.empty(0))
        num_eps = self._num_episodes
        venv = self._vector_env(len(values) * num_eps)
        seed = self.seed
        result = run_vector(
            self._batched_policy(venv.num_envs),
            venv,
            values,
            self._slot_settings(),
            first_job=first_index * num_eps,
            wave_seed=lambda wave: derive_seed(seed, STREAM_EVALUATION, eval_round, wave, 0, _WAVE_KEY),
            schedule=self._schedule,
            **self._rollout_streams(first_index, eval_round),
        )
        return EvalResult(result.returns, result.episodes, result.interactions, result.obs_delta)
