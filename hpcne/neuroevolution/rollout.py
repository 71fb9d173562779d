"""The lockstep rollout engine: many (solution, episode) jobs stepped side by side.

Each *slot* owns one environment and one policy slot. Jobs are taken in order
(solution 0 episode 0, solution 0 episode 1, ..., solution 1 episode 0, ...); a slot that
finishes an episode takes the next job, so the batch stays full even when episode lengths
differ. Per step there is one batched policy call for all slots, then one ``env.step`` per
busy slot.

Everything a job produces depends only on its solution's parameters, its episode seed and the
frozen observation statistics. Observation-statistic deltas are accumulated per job and summed
in job order at the end, so the result is bit-identical whatever the number of slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from hpcne.core import annotate_solution
from hpcne.neuroevolution.policies import BatchedPolicy

__all__ = ["EpisodeSettings", "RolloutResult", "run_lockstep"]


@dataclass(frozen=True)
class EpisodeSettings:
    """How an episode is run and scored (GymNE's episode options)."""

    num_episodes: int = 1
    episode_length: int | None = None
    decrease_rewards_by: float = 0.0
    alive_bonus_schedule: tuple[float, ...] | None = None
    action_noise_stdev: float | None = None
    discrete: bool = False
    act_low: np.ndarray | None = None
    act_high: np.ndarray | None = None

    def alive_bonus(self, t: int) -> float:
        """The bonus added to the reward of step ``t`` (1-based) by ``alive_bonus_schedule``."""
        schedule = self.alive_bonus_schedule
        if schedule is None:
            return 0.0
        if len(schedule) == 2:
            t0, bonus = schedule
            return float(bonus) if t > t0 else 0.0
        t0, t1, bonus = schedule
        if t <= t0:
            return 0.0
        if t >= t1:
            return float(bonus)
        return float(bonus) * (t - t0) / (t1 - t0)


@dataclass
class RolloutResult:
    """Scores and side effects of a set of rollouts."""

    returns: np.ndarray  # (num_solutions,) mean return over episodes, float64
    interactions: int
    episodes: int
    obs_delta: np.ndarray | None  # packed [count, sum..., sumsq...] float64, or None


def run_lockstep(
    policy: BatchedPolicy,
    envs: Sequence[gym.Env],
    params: np.ndarray,
    settings: EpisodeSettings,
    *,
    episode_seed: Callable[[int, int], int | None],
    obs_mean: np.ndarray | None = None,
    obs_stdev: np.ndarray | None = None,
    collect_stats: bool = False,
    noise_rng: Callable[[int, int], np.random.Generator] | None = None,
    index_offset: int = 0,
) -> RolloutResult:
    """Run ``settings.num_episodes`` episodes for each row of ``params``.

    Args:
        policy: A batched policy with at least ``len(envs)`` slots.
        envs: One environment per slot.
        params: ``(num_solutions, solution_length)`` parameter rows.
        settings: Episode options.
        episode_seed: ``(solution, episode) -> reset seed`` (None for no reseeding).
        obs_mean: Frozen normalization mean (None: no normalization).
        obs_stdev: Frozen normalization stdev.
        collect_stats: Accumulate raw observations into an observation-statistics delta.
        noise_rng: ``(solution, episode) -> generator`` for action noise.
        index_offset: Added to row numbers in error reports (the rows' place in the population).

    Returns:
        Mean return per solution, step and episode counts, and the statistics delta.
    """
    num_solutions = params.shape[0]
    num_eps = settings.num_episodes
    num_jobs = num_solutions * num_eps
    slots = min(len(envs), num_jobs)
    obs_len = int(np.prod(envs[0].observation_space.shape))
    mean32 = None if obs_mean is None else obs_mean.astype(np.float32)
    std32 = None if obs_stdev is None else obs_stdev.astype(np.float32)
    if collect_stats:
        job_count = np.zeros(num_jobs, np.int64)
        job_sum = np.zeros((num_jobs, obs_len))
        job_sumsq = np.zeros((num_jobs, obs_len))

    raw = np.zeros((policy.slots, obs_len), np.float32)
    job_of = np.full(slots, -1, np.int64)
    loaded = np.full(slots, -1, np.int64)
    t_of = np.zeros(slots, np.int64)
    ep_return = np.zeros(slots)
    noise: list[np.random.Generator | None] = [None] * slots
    episode_returns = np.zeros(num_jobs)
    next_job = 0
    interactions = 0

    def record(slot: int, obs: np.ndarray) -> None:
        raw[slot] = np.asarray(obs, np.float32).reshape(-1)
        if collect_stats:
            j = job_of[slot]
            o = raw[slot].astype(np.float64)
            job_count[j] += 1
            job_sum[j] += o
            job_sumsq[j] += o * o

    def start(slot: int) -> bool:
        nonlocal next_job, current
        current = slot
        if next_job >= num_jobs:
            job_of[slot] = -1
            return False
        job = next_job
        next_job += 1
        sol, ep = divmod(job, num_eps)
        job_of[slot] = job
        if loaded[slot] != sol:
            policy.load(slot, params[sol])
            loaded[slot] = sol
        policy.reset(slot)
        t_of[slot] = 0
        ep_return[slot] = 0.0
        noise[slot] = noise_rng(sol, ep) if noise_rng is not None and settings.action_noise_stdev else None
        obs, _ = envs[slot].reset(seed=episode_seed(sol, ep))
        record(slot, obs)
        return True

    def advance(s: int, out_s: np.ndarray) -> bool:
        """Take one step in slot ``s``; return whether the slot still has work."""
        nonlocal interactions, current
        current = s
        if settings.discrete:
            action = int(np.argmax(out_s))
        else:
            action = out_s
            if noise[s] is not None:
                action = action + noise[s].normal(0.0, settings.action_noise_stdev, action.shape)
            action = np.clip(action, settings.act_low, settings.act_high)
        obs, reward, terminated, truncated, _ = envs[s].step(action)
        t_of[s] += 1
        interactions += 1
        ep_return[s] += float(reward) - settings.decrease_rewards_by + settings.alive_bonus(int(t_of[s]))
        record(s, obs)
        limit = settings.episode_length
        if terminated or truncated or (limit is not None and t_of[s] >= limit):
            episode_returns[job_of[s]] = ep_return[s]
            return start(s)
        return True

    current = 0  # the slot being worked on, for error reports
    try:
        busy = [s for s in range(slots) if start(s)]
        while busy:
            x = raw if mean32 is None else (raw - mean32) / std32
            out = policy(x)
            if not np.isfinite(out[busy]).all():
                bad = next(s for s in busy if not np.isfinite(out[s]).all())
                raise FloatingPointError(
                    f"Solution {index_offset + job_of[bad] // num_eps} produced a non-finite action "
                    f"{out[bad].tolist()} at step {t_of[bad]}; check the network and its parameters."
                )
            busy = [s for s in busy if advance(s, out[s])]
    except Exception as err:
        job = int(job_of[current]) if job_of[current] >= 0 else next_job - 1
        annotate_solution(err, index_offset + max(job, 0) // num_eps)
        raise

    returns = episode_returns.reshape(num_solutions, num_eps).sum(axis=1) / num_eps
    obs_delta = None
    if collect_stats:
        obs_delta = np.concatenate([[job_count.sum()], job_sum.sum(axis=0), job_sumsq.sum(axis=0)])
    return RolloutResult(returns, interactions, num_jobs, obs_delta)
