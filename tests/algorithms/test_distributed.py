"""The distributed mode's sampling and exact sums, and PGPE/SNES/CEM giving the same run in both modes."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import torch

from hpcne import sampling
from hpcne.algorithms import ALGORITHMS, XNES, SearchAlgorithm
from hpcne.config import ConfigError, RunConfig
from hpcne.core import Problem
from hpcne.neuroevolution import GymNE
from hpcne.sampling import (
    NOISE_TABLE_ENV,
    GaussianSample,
    NoiseStream,
    SampledBatch,
    from_fixed,
    noise_sums,
    noise_table_size,
    scales,
)

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "pgpe": ("pgpe", {"popsize": 8, "center_learning_rate": 0.1, "stdev_learning_rate": 0.1, "stdev_init": 1.0}),
    "pgpe-raw": (
        "pgpe",
        {
            "popsize": 6,
            "center_learning_rate": 0.1,
            "stdev_learning_rate": 0.1,
            "stdev_init": 1.0,
            "ranking_method": "raw",
            "symmetric": False,
            "optimizer": "adam",
        },
    ),
    "snes": ("snes", {"stdev_init": 1.0}),
    "snes-symmetric": ("snes", {"stdev_init": 1.0, "popsize": 10, "symmetric": True}),
    "cem": ("cem", {"popsize": 10, "parenthood_ratio": 0.3, "stdev_init": 1.0}),
}


def weights(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


@pytest.mark.parametrize("symmetric", [False, True])
def test_noise_sums_have_the_same_bits_for_every_split(symmetric: bool) -> None:
    stream = NoiseStream(seed=5, eval_round=3, length=300, symmetric=symmetric)
    w = weights(24)
    exponents = scales(w, symmetric=symmetric)
    units = stream.units(24)
    whole = noise_sums(stream, w, exponents, 0, units)
    for cuts in ([0, 1, units], [0, 5, 7, units], [0, *range(1, units), units]):
        parts = [noise_sums(stream, w, exponents, a, b) for a, b in pairwise(cuts)]
        for total, index in zip(whole, (0, 1)):
            summed = np.zeros_like(total)
            for part in reversed(parts):  # any order: integer sums are associative
                summed += part[index]
            assert summed.tobytes() == total.tobytes()
    z = stream.noise(0, 24, np.float64)
    squares = np.stack([stream.unit_squares(i // 2 if symmetric else i) for i in range(24)]).astype(np.float64)
    assert np.abs(squares - z**2).max() <= 2.0**-17  # the table's squares are z**2 on the 2**-16 grid
    # each weight is rounded to the grid 2**-(e - 16): off by at most half a step, times |z| <= 16 (z**2 <= 256)
    for total, exponent, noise, bound in zip(whole, exponents, (z, squares), (16, 256)):
        error = len(w) * bound * 2.0 ** -(exponent - 16 + 1)
        np.testing.assert_allclose(from_fixed(total, exponent), w @ noise, rtol=0, atol=error)
        assert error < 1e-7 * np.abs(w).sum() * bound  # far below the float32 resolution of such a sum


def test_noise_sums_do_not_depend_on_the_column_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = NoiseStream(seed=2, eval_round=1, length=300, symmetric=True)
    w = weights(16, seed=4)
    exponents = scales(w, symmetric=True)
    whole = noise_sums(stream, w, exponents, 0, 8)
    monkeypatch.setattr(sampling, "_SUM_BLOCK", 7)  # blocks that do not divide the length
    blocked = noise_sums(stream, w, exponents, 0, 8)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(whole, blocked))
    assert whole[0].any() and whole[1].any()


def test_a_sample_has_mirrored_pairs_and_rows_independent_of_the_range() -> None:
    stream = NoiseStream(seed=1, eval_round=0, length=50, symmetric=True)
    sample = GaussianSample(stream, np.full(50, 0.5, np.float32), np.full(50, 2.0, np.float32))
    rows, noise = sample.rows(0, 6), stream.noise(0, 6)
    assert np.array_equal(noise[0::2], -noise[1::2]) and len(np.unique(noise[0::2, 0])) == 3
    assert rows.tobytes() == (sample.center + sample.stdev * noise).tobytes()
    assert rows[3:5].tobytes() == sample.rows(3, 5).tobytes()
    buffer = np.full((4, 50), np.nan, np.float32)
    assert sample.rows(3, 5, buffer).tobytes() == rows[3:5].tobytes() and not np.isnan(buffer[:2]).any()
    other_round = GaussianSample(NoiseStream(1, 1, 50, True), sample.center, sample.stdev)
    assert not np.array_equal(other_round.rows(0, 2), rows[:2])


def test_zero_weights_give_zero_sums() -> None:
    stream = NoiseStream(seed=1, eval_round=0, length=10, symmetric=False)
    w = np.zeros(4)
    sums = noise_sums(stream, w, scales(w, symmetric=False), 0, 4)
    assert not any(total.any() for total in sums)


def run(name: str, make_problem: Callable[..., Problem], steps: int, **options: Any) -> SearchAlgorithm:
    algo, config = CONFIGS[name]
    searcher = ALGORITHMS[algo](make_problem(d=7, seed=3, noise=0.1), **config, **options)
    searcher.run(steps)
    return searcher


def assert_same_state(a: SearchAlgorithm, b: SearchAlgorithm) -> None:
    for key in ("center", "stdev"):
        assert torch.equal(a.status[key], b.status[key]), key
    assert torch.equal(a.population.evals, b.population.evals)
    assert torch.equal(a.status["best"].values, b.status["best"].values)
    assert torch.equal(a.status["pop_best"].values, b.status["pop_best"].values)
    assert a.status["best_eval"] == b.status["best_eval"]


@pytest.mark.parametrize("name", CONFIGS)
def test_distributed_and_centralized_runs_are_bit_identical(name: str, make_problem: Callable[..., Problem]) -> None:
    central = run(name, make_problem, 4)
    distributed = run(name, make_problem, 4, distributed=True)
    assert isinstance(distributed.population, SampledBatch) and not isinstance(central.population, SampledBatch)
    assert_same_state(central, distributed)


@pytest.mark.parametrize("name", ["pgpe", "cem"])
def test_a_checkpoint_continues_in_the_other_mode_with_the_same_bits(
    name: str, make_problem: Callable[..., Problem]
) -> None:
    reference = run(name, make_problem, 4)
    for first, second in ((False, True), (True, False)):
        before = run(name, make_problem, 2, distributed=first)
        after = run(name, make_problem, 0, distributed=second)
        after.load_state_dict(before.state_dict())
        after.run(2)
        assert torch.equal(after.status["center"], reference.status["center"])
        assert torch.equal(after.status["stdev"], reference.status["stdev"])
        assert torch.equal(after.population.evals, reference.population.evals)


def test_adaptive_popsize_is_the_same_in_both_modes() -> None:
    def searcher(distributed: bool) -> SearchAlgorithm:
        problem = GymNE("CartPole-v1", "Linear(obs_length, act_length)", seed=2, episode_length=20, num_actors=1)
        return ALGORITHMS["pgpe"](
            problem,
            popsize=4,
            num_interactions=150,
            popsize_max=16,
            center_learning_rate=0.1,
            stdev_learning_rate=0.1,
            stdev_init=0.5,
            distributed=distributed,
        )

    central, distributed = searcher(False), searcher(True)
    central.run(3)
    distributed.run(3)
    assert len(distributed.population) > 4  # the generation was extended
    assert_same_state(central, distributed)
    assert central.problem.interaction_count == distributed.problem.interaction_count


def test_a_generated_population_gives_rows_but_refuses_changes(make_problem: Callable[..., Problem]) -> None:
    central = run("pgpe", make_problem, 1)
    distributed = run("pgpe", make_problem, 1, distributed=True)
    population = distributed.population
    assert torch.equal(population.values, central.population.values)
    assert torch.equal(population.take([5, 2]).values, central.population.values[[5, 2]])
    assert torch.equal(population[3].values, central.population[3].values)
    with pytest.raises(TypeError, match="cannot be modified"):
        population[0].set_values(torch.zeros(7))
    with pytest.raises(TypeError, match="cannot be modified"):
        population.access_values()


def test_searchers_that_need_the_whole_population_refuse_distributed(make_problem: Callable[..., Problem]) -> None:
    with pytest.raises(ValueError, match="XNES cannot run distributed: its update needs every solution"):
        XNES(make_problem(), stdev_init=1.0, distributed=True)
    for algo in ("xnes", "cmaes", "ga"):
        with pytest.raises(ConfigError, match=f"distributed = true needs one of pgpe, snes, cem; '{algo}' updates"):
            RunConfig(algo=algo, distributed=True).validate()
    assert RunConfig(algo="snes", distributed=True).searcher_options()["distributed"] is True


def test_the_noise_table_size_is_an_option_checked_for_sense(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = NoiseStream(seed=2, eval_round=0, length=100, symmetric=False)
    default = stream.unit(0).copy()
    assert noise_table_size(100) == 2**20 and noise_table_size(10**6) == 16 * 10**6
    monkeypatch.setenv(NOISE_TABLE_ENV, "5000")
    assert noise_table_size(100) == 5000 and not np.array_equal(stream.unit(0), default)
    assert not stream.unit(0).flags.writeable  # a view of the shared table: nobody may change it
    for bad in ("150", "lots"):
        monkeypatch.setenv(NOISE_TABLE_ENV, bad)
        with pytest.raises(ValueError, match=r"HPCNE_NOISE_TABLE=.* at least twice the solution length"):
            stream.unit(0)


def test_a_state_sampled_from_another_noise_table_is_refused(
    make_problem: Callable[..., Problem], monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = run("snes", make_problem, 1).state_dict()
    assert saved["noise_table"] == 2**20
    monkeypatch.setenv(NOISE_TABLE_ENV, "4000")
    other = ALGORITHMS["snes"](make_problem(d=7, seed=3, noise=0.1), **CONFIGS["snes"][1])
    with pytest.raises(ValueError, match=r"noise table of 1,048,576 values, but this process has 4,000 .*unset HPCNE"):
        other.load_state_dict(saved)
    assert other.step_count == 0  # refused before anything was loaded
    monkeypatch.delenv(NOISE_TABLE_ENV)
    other.load_state_dict(saved)
    del saved["noise_table"]  # a state saved before the size was recorded still loads
    other.load_state_dict(saved)
    assert (
        XNES(make_problem(), stdev_init=1.0).noise_table is None
        and "noise_table" not in XNES(make_problem(), stdev_init=1.0).state_dict()
    )
