"""Faults met by a training run: NaN fitnesses, a second writer, damaged or foreign files, bad numbers.

Each case ends with a clear message (or is handled as documented in docs/TRAINING.md), never a hang,
a traceback or silently wrong results.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from run_helpers import TINY, load_run


class NaNRewardCartPole(gym.Wrapper):
    """CartPole whose reward at step 3 is NaN when the policy pushes right: some solutions get NaN fitness."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def reset(self, **kwargs: Any) -> Any:
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        self.steps += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, math.nan if self.steps == 3 and action == 1 else reward, terminated, truncated, info


@pytest.fixture(scope="module")
def nan_env() -> str:
    name = "hpcne-test/NaNRewardCartPole-v0"
    if name not in gym.registry:
        gym.register(name, entry_point=NaNRewardCartPole)
    return name


def test_nan_fitness_is_ranked_worst_counted_and_left_out_of_the_log(in_process, nan_env: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *TINY, "--generations", "3", "--env", nan_env, "--run-dir", run_dir])
    assert status == 0, out + err
    assert "solutions have a NaN fitness (a NaN reward or a diverged simulation?); they are ranked worst" in err
    assert err.count("NaN fitness") == 1, err  # warned once, then counted
    assert "solutions had a NaN fitness (ranked worst)" in out
    table = load_run(run_dir).table
    for column in ("mean_eval", "median_eval", "best_eval", "pop_best_eval", "worst_eval"):
        assert np.isfinite(table[column]).all(), table


def test_nan_policy_error_ends_the_run_before_the_generation_is_checkpointed(
    in_process, nan_env: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ["train", *TINY, "--generations", "3", "--env", nan_env, "--nan-policy", "error", "--run-dir", run_dir]
    status, out, err = in_process(args)
    assert status == 1, out + err
    assert err.startswith("hpcne: error: generation 1: "), err
    assert "nan_policy 'error' ends the run here, before this generation is checkpointed (no checkpoint yet" in err
    assert not list((run_dir / "checkpoints").glob("ckpt-*.h5"))
