"""The vector rollout engine: (solution, episode) jobs on the sub-environments of one gymnasium VectorEnv.

Per step there is one batched policy call for all sub-environments and one ``VectorEnv.step``;
the bookkeeping (returns, step counts, time limits, which sub-environment is busy) is numpy
arithmetic over all of them, so the per-step cost hardly grows with their number. Python works
only when an episode ends.

How an episode starts decides what a job's result depends on (see docs/VECTORIZED.md):

- **Per-job resets** (the vector env's ``autoreset_mode`` is ``DISABLED``, as in the sync and
  async vector envs hpcne builds around scalar environments): a sub-environment that ends an
  episode is reset alone (``options={"reset_mask": ...}``) with the seed of its next job, the
  seed GymNE uses for that job. A job's result depends only on its solution and its seed: not
  on the number of sub-environments, not on the layout, and equal to GymNE's.
- **Waves** (``schedule="waves"`` with ``NEXT_STEP`` or ``SAME_STEP`` autoreset, e.g. CartPole-v1's
  own vector entry point, which draws every sub-environment's start from one generator): jobs are
  numbered across the whole population and laid on a fixed grid of waves of ``num_envs``
  sub-environments; a wave starts with one ``reset(seed=wave_seed(w))`` and ends when each of its
  jobs has ended one episode (a sub-environment whose episode has ended idles through its
  autoresets). A job's start depends on its wave's seed and its position in the wave, both fixed
  by its number, so results do not depend on the layout either; they do depend on ``num_envs``.
- **Refill** (``schedule="refill"``, same envs): one reset per evaluation; a sub-environment takes
  the next job at its autoreset, starting from the vector env's own random state. No idling, but
  a job's start depends on the jobs run before it on the same vector env, so on the split.

Observation statistics are accumulated per job in the job's time order and summed in job order,
as in :mod:`hpcne.neuroevolution.rollout`, so the delta is the same bits as GymNE's for the same
observations.

A vector env whose observations are torch tensors (a torch-native env, on a GPU or not) keeps the
piece on its device: normalization, the policy call (the ``torch`` and ``vmap`` backends'
``forward_tensor``), the actions and the observation statistics are torch operations there. Only
the rewards and done flags (``num_envs`` numbers each) come to the host per step, for the
accounting and for deciding which sub-environments start their next job. The operations are the
numpy path's, element for element, so the results are the same bits for the same observations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from hpcne.core import annotate_solution
from hpcne.neuroevolution.policies import BatchedPolicy
from hpcne.neuroevolution.rollout import EpisodeSettings, RolloutResult
from hpcne.watchdog import beat

__all__ = ["SCHEDULES", "autoreset_mode", "run_vector"]


def autoreset_mode(venv: gym.vector.VectorEnv) -> AutoresetMode:
    """The vector env's autoreset mode (gymnasium's default, ``NEXT_STEP``, when it does not say)."""
    mode = (venv.metadata or {}).get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return AutoresetMode(mode.value if isinstance(mode, AutoresetMode) else mode)


class _JobStats:
    """Observation sums per job (count, sum, sum of squares), added in each job's time order.

    The sums live where the observations do: numpy arrays, or float64 tensors on their device.
    """

    def __init__(self, num_jobs: int, obs_len: int, device: torch.device | None = None) -> None:
        self.count = np.zeros(num_jobs, np.int64)
        self.device = device
        if device is None:
            self.sum: Any = np.zeros((num_jobs, obs_len))
            self.sumsq: Any = np.zeros((num_jobs, obs_len))
        else:
            self.sum = torch.zeros((num_jobs, obs_len), dtype=torch.float64, device=device)
            self.sumsq = torch.zeros_like(self.sum)

    def add(self, jobs: np.ndarray, obs: Any) -> None:
        """Add one observation row per job (no job twice)."""
        self.count[jobs] += 1
        if self.device is None:
            obs = obs.astype(np.float64)
        else:
            obs = obs.to(self.device, torch.float64)
            jobs = torch.from_numpy(jobs).to(self.device)  # type: ignore[assignment]
        self.sum[jobs] += obs
        self.sumsq[jobs] += obs * obs

    def packed(self) -> np.ndarray:
        """The packed RunningStat delta ``[count, sum..., sumsq...]`` (summed over jobs by numpy, as GymNE does)."""
        total, squares = (a if self.device is None else a.cpu().numpy() for a in (self.sum, self.sumsq))
        return np.concatenate([[self.count.sum()], total.sum(axis=0), squares.sum(axis=0)])


def _host(x: Any) -> np.ndarray:
    """A numpy array of a vector env's rewards or done flags (one device-to-host copy for a tensor)."""
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class _TensorPiece:
    """The torch side of a step for a vector env with tensor observations: obs → normalization → policy → actions."""

    def __init__(
        self, policy: BatchedPolicy, settings: EpisodeSettings, obs: torch.Tensor, mean: Any, std: Any
    ) -> None:
        self.device = obs.device
        self.forward = getattr(policy, "forward_tensor", None)
        self.policy = policy
        self.host: np.ndarray | None = None  # the policy's input on the host (numpy and loop backends)
        self.settings = settings
        self.mean = None if mean is None else torch.as_tensor(mean, device=self.device)
        self.std = None if std is None else torch.as_tensor(std, device=self.device)
        if not settings.discrete:
            self.low = torch.as_tensor(np.asarray(settings.act_low), device=self.device)
            self.high = torch.as_tensor(np.asarray(settings.act_high), device=self.device)
            dtype = settings.act_dtype
            self.dtype = None if dtype is None else torch.from_numpy(np.zeros(0, dtype)).dtype

    def outputs(self, obs: torch.Tensor, busy_list: list[int]) -> torch.Tensor:
        """The policy outputs for float32 ``(n, obs_len)`` observations (normalized here if asked)."""
        x = obs if self.mean is None else (obs - self.mean) / self.std
        if self.forward is not None:
            return self.forward(x).to(self.device)  # no-op unless the policy is on another device than the env
        # numpy and loop backends: a host round trip, through one array for every step (NumpyMLP binds its calls to it)
        host = x.cpu().numpy()
        if self.host is None or self.host.shape != host.shape:
            self.host = np.empty_like(host)
        np.copyto(self.host, host)
        return torch.from_numpy(self.policy(self.host, busy_list)).to(self.device)

    def actions(self, out: torch.Tensor) -> torch.Tensor:
        """The vector env's actions for the outputs, as :func:`_actions` computes them, on the device."""
        settings = self.settings
        if settings.discrete:
            actions = out.argmax(dim=1)
            return actions + settings.act_start if settings.act_start else actions
        actions = torch.minimum(torch.maximum(out, self.low), self.high)
        if self.dtype is not None:
            actions = actions.to(self.dtype)
        return actions if settings.act_shape is None else actions.reshape(len(actions), *settings.act_shape)


def _alive_bonus(settings: EpisodeSettings) -> Callable[[np.ndarray], np.ndarray] | None:
    """``settings.alive_bonus`` over an array of step numbers (the same float64 operations)."""
    schedule = settings.alive_bonus_schedule
    if schedule is None:
        return None
    t0, t1, bonus = (schedule[0], *schedule) if len(schedule) == 2 else schedule
    t0, t1, bonus = float(t0), float(t1), float(bonus)

    def vector_bonus(t: np.ndarray) -> np.ndarray:
        ramp = ((t - t0) / (t1 - t0)) * bonus if t1 > t0 else np.zeros(t.shape)
        return np.where(t >= t1, bonus, np.where(t >= t0, ramp, 0.0))

    return vector_bonus


SCHEDULES = ("waves", "refill")


def run_vector(
    policy: BatchedPolicy,
    venv: gym.vector.VectorEnv,
    params: np.ndarray,
    settings: EpisodeSettings,
    *,
    first_job: int,
    episode_seed: Callable[[int, int], int],
    wave_seed: Callable[[int], int],
    schedule: str = "waves",
    obs_mean: np.ndarray | None = None,
    obs_stdev: np.ndarray | None = None,
    collect_stats: bool = False,
    noise_rng: Callable[[int, int], np.random.Generator] | None = None,
    index_offset: int = 0,
) -> RolloutResult:
    """Run ``settings.num_episodes`` episodes for each row of ``params`` on the sub-environments of ``venv``.

    Args:
        policy: A batched policy with ``venv.num_envs`` slots.
        venv: The vector environment; with ``autoreset_mode`` DISABLED every episode starts with
            a reset of its sub-environment alone, seeded by ``episode_seed``; otherwise ``schedule`` says how.
        params: ``(num_solutions, solution_length)`` parameter rows.
        settings: Episode options.
        first_job: The population-wide number of the first job (``first solution * num_episodes``),
            which places the jobs on the wave grid.
        episode_seed: ``(solution, episode) -> reset seed`` for per-job resets.
        wave_seed: ``wave -> seed`` of a full reset: of each wave, or with ``"refill"`` the one reset
            of the evaluation (the wave of ``first_job``).
        schedule: For a vector env that autoresets: ``"waves"`` (results independent of the layout)
            or ``"refill"``: a sub-environment takes the next job at its autoreset, starting from
            the vector env's own random state (results depend on how the population is split).
        obs_mean: Frozen normalization mean (None: no normalization).
        obs_stdev: Frozen normalization stdev.
        collect_stats: Accumulate raw observations into an observation-statistics delta.
        noise_rng: ``(solution, episode) -> generator`` for action noise.
        index_offset: Added to row numbers in error reports (the rows' place in the population).

    Returns:
        Mean return per solution, step and episode counts (steps of idle sub-environments and
        autoreset steps are not counted), and the statistics delta.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}.")
    n = venv.num_envs
    num_eps = settings.num_episodes
    num_jobs = params.shape[0] * num_eps
    mode = autoreset_mode(venv)
    per_job = mode == AutoresetMode.DISABLED
    refilling = not per_job and schedule == "refill"
    obs_len = int(np.prod(venv.single_observation_space.shape))
    stats: _JobStats | None = None
    piece: _TensorPiece | None = None  # set when the env's observations are tensors
    mean32 = None if obs_mean is None else np.asarray(obs_mean, np.float32).reshape(-1)
    std32 = None if obs_stdev is None else np.asarray(obs_stdev, np.float32).reshape(-1)

    job_of = np.full(n, -1, np.int64)  # the local job each sub-environment runs, -1: idle
    active = np.zeros(n, bool)  # running a job whose steps count
    pending = np.zeros(n, bool)  # refill, NEXT_STEP: given a job, taking its autoreset step first
    t = np.zeros(n, np.int64)
    ret = np.zeros(n)
    episode_returns = np.zeros(num_jobs)
    loaded = [-1] * n
    use_noise = noise_rng is not None and bool(settings.action_noise_stdev)
    noise: list[np.random.Generator | None] = [None] * n
    dec = settings.decrease_rewards_by
    bonus = _alive_bonus(settings)
    limit = settings.episode_length
    next_job = 0  # per-job resets and refill: the next local job to hand out
    wave = (first_job // n) - 1  # waves: the current wave on the population-wide grid
    last_wave = (first_job + num_jobs - 1) // n
    interactions = 0

    def assign(slot: int, job: int) -> None:
        """Give ``slot`` the local ``job``: its parameters, a fresh policy state and episode counters."""
        sol, ep = divmod(job, num_eps)
        if loaded[slot] != sol:
            policy.load(slot, params[sol])
            loaded[slot] = sol
        policy.reset(slot)
        job_of[slot] = job
        t[slot] = 0
        ret[slot] = 0.0
        noise[slot] = noise_rng(sol, ep) if use_noise else None  # type: ignore[misc]

    def hand_out(slots: np.ndarray) -> np.ndarray:
        """Give the next jobs to ``slots`` while jobs are left; the slots that got one."""
        nonlocal next_job
        given = slots[: max(0, min(len(slots), num_jobs - next_job))]
        for slot in given.tolist():
            assign(slot, next_job)
            next_job += 1
        return given

    def reset_alone(slots: np.ndarray) -> np.ndarray:
        """Per-job resets: give ``slots`` their next jobs and reset them alone with those jobs' seeds.

        A slot left without a job is reset too, so that it never steps on after its episode ended.
        """
        given = hand_out(slots)
        active[given] = True
        seeds: list[int | None] = [None] * n
        for slot in given.tolist():
            seeds[slot] = episode_seed(*divmod(int(job_of[slot]), num_eps))
        beat()
        mask = np.zeros(n, bool)
        mask[slots] = True
        obs, _ = venv.reset(seed=seeds, options={"reset_mask": mask})
        return obs

    def start_wave() -> np.ndarray:
        """Waves: reset every sub-environment with the next wave's seed; start the jobs it holds."""
        nonlocal wave
        wave += 1
        lo = max(first_job, wave * n) - first_job
        hi = min(first_job + num_jobs, (wave + 1) * n) - first_job
        for job in range(lo, hi):
            slot = (first_job + job) % n
            assign(slot, job)
            active[slot] = True
        beat()
        obs, _ = venv.reset(seed=wave_seed(wave))
        return obs

    def start_refill() -> np.ndarray:
        """Refill: reset every sub-environment and give each the next job.

        Once at the start; again only if jobs are left but every sub-environment idles in an
        episode cut by ``episode_length`` that the env does not end by itself.
        """
        seed = wave_seed((first_job + next_job) // n)
        active[hand_out(np.arange(n))] = True
        beat()
        obs, _ = venv.reset(seed=seed)
        return obs

    slot = -1  # the sub-environment being worked on, for error reports
    try:
        obs = reset_alone(np.arange(n)) if per_job else start_refill() if refilling else start_wave()
        if isinstance(obs, torch.Tensor):
            piece = _TensorPiece(policy, settings, obs, mean32, std32)
        if collect_stats:
            stats = _JobStats(num_jobs, obs_len, None if piece is None else piece.device)
        busy = np.flatnonzero(active)
        busy_list = busy.tolist()
        x = np.empty((n, obs_len), np.float32)  # the policy's (normalized) input
        while True:
            if piece is None:
                obs = np.asarray(obs, np.float32).reshape(n, obs_len)
                if mean32 is None:  # one input array for every step: NumpyMLP binds its calls to it once
                    np.copyto(x, obs)
                else:
                    np.subtract(obs, mean32, x)
                    np.divide(x, std32, x)
                out = policy(x, busy_list)
                finite = math.isfinite(np.add.reduce(out, axis=None))
            else:
                obs = obs.to(piece.device, torch.float32).reshape(n, obs_len)
                out = piece.outputs(obs, busy_list)
                finite = bool(torch.isfinite(out).all())
            if stats is not None:
                stats.add(job_of[busy], obs[busy])
            if not finite:
                host_out = _host(out)
                slot = next((s for s in busy_list if not np.isfinite(host_out[s]).all()), -1)
                if slot >= 0:
                    raise FloatingPointError(
                        f"Solution {index_offset + job_of[slot] // num_eps} produced a non-finite action "
                        f"{host_out[slot].tolist()} at step {t[slot]}; check the network and its parameters."
                    )
                nan_to_num = np.nan_to_num if piece is None else torch.nan_to_num
                out = nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)  # rows of idle sub-environments
            if use_noise:
                draws = np.zeros((n, out.shape[1]))
                for s in busy_list:
                    draws[s] = noise[s].normal(0.0, settings.action_noise_stdev, out.shape[1])  # type: ignore[union-attr]
                out = (
                    out.astype(np.float64) + draws
                    if piece is None
                    else out.double() + torch.from_numpy(draws).to(piece.device)
                )
            actions = _actions(out, settings) if piece is None else piece.actions(out)
            obs, reward, terminated, truncated, info = venv.step(actions)
            terminated, truncated = _host(terminated), _host(truncated)
            t += active
            r = _host(reward).astype(np.float64)
            if dec:
                r = r - dec
            if bonus is not None:
                r = r + bonus(t)
            np.add(ret, r, out=ret, where=active)
            interactions += len(busy_list)
            finished = np.logical_or(terminated, truncated)
            done = (finished | (t >= limit) if limit is not None else finished) & active
            any_done = done.any()
            changed = any_done
            if refilling and pending.any():  # their autoreset step is over: the observation is their first
                active |= pending
                pending[:] = False
                changed = True
            if any_done:
                ended = np.flatnonzero(done)
                episode_returns[job_of[ended]] = ret[ended]
                if stats is not None:
                    final = info["final_obs"] if mode == AutoresetMode.SAME_STEP else obs
                    if piece is None:
                        rows = np.stack([np.asarray(final[s], np.float32).reshape(-1) for s in ended])
                    else:
                        rows = torch.stack(
                            [torch.as_tensor(final[s]).to(piece.device, torch.float32).reshape(-1) for s in ended]
                        )
                    stats.add(job_of[ended], rows)
                active[ended] = False
                job_of[ended] = -1
            if per_job:
                if any_done or finished.any():  # idle ones that ended an episode are reset too
                    if next_job >= num_jobs and not active.any():
                        break
                    obs = reset_alone(np.flatnonzero(done | finished))
            elif refilling:
                # A sub-environment is free once the env itself ended its episode (an episode cut by
                # episode_length goes on idle until then): at its autoreset it starts the next job.
                free = np.flatnonzero(finished & ~active)
                if len(free) and next_job < num_jobs:
                    changed = True
                    given = hand_out(free)
                    (pending if mode == AutoresetMode.NEXT_STEP else active)[given] = True
                    beat()
                if not active.any() and not pending.any():
                    if next_job >= num_jobs:
                        break
                    obs = start_refill()
                    changed = True
            elif any_done and not active.any():
                if wave >= last_wave:
                    break
                obs = start_wave()
                changed = True
            if changed:
                busy = np.flatnonzero(active)
                busy_list = busy.tolist()
    except Exception as err:
        if slot >= 0:
            annotate_solution(err, index_offset + int(job_of[slot]) // num_eps)
        raise

    returns = episode_returns.reshape(-1, num_eps).sum(axis=1) / num_eps
    return RolloutResult(returns, interactions, num_jobs, stats.packed() if stats is not None else None)


def _actions(out: np.ndarray, settings: EpisodeSettings) -> Any:
    """The vector env's actions for the policy outputs (argmax of a Discrete space, clipped Box values)."""
    if settings.discrete:
        actions = out.argmax(axis=1)
        return actions + settings.act_start if settings.act_start else actions
    actions = np.maximum(out, settings.act_low)  # np.clip without its slow dispatch
    np.minimum(actions, settings.act_high, out=actions)
    if settings.act_dtype is not None and actions.dtype != settings.act_dtype:
        actions = actions.astype(settings.act_dtype)
    return actions if settings.act_shape is None else actions.reshape(len(actions), *settings.act_shape)
