"""The Gaussian searchers' formulas pinned by hand, and their argument checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from hpcne.algorithms import CEM, CMAES, PGPE, SNES, XNES, GeneticAlgorithm
from hpcne.algorithms.gaussian import limit_stdev, stdev_from_radius
from hpcne.algorithms.pgpe import pgpe_gradients
from hpcne.algorithms.ranking import rank
from hpcne.core import EvalResult, Problem, SolutionBatch


def test_symmetric_pgpe_gradient_two_directions() -> None:
    # Rows: center + s0, center - s0, center + s1, center - s1.
    s0, s1 = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])
    noise = torch.stack([s0, -s0, s1, -s1])
    utilities = torch.tensor([0.5, -1 / 6, 1 / 6, -0.5])
    stdev = torch.tensor([1.0, 2.0])
    grad_center, grad_stdev = pgpe_gradients(noise, utilities, stdev, symmetric=True)
    # (u+ - u-)/2 = (1/3, 1/3): (s0 + s1) / 3 / 2 directions = (0, 1/3).
    torch.testing.assert_close(grad_center, torch.tensor([0.0, 1 / 3]))
    # (u+ + u-)/2 = (1/6, -1/6); (s^2 - stdev^2)/stdev = (0, 0) for s0 and (0, -2) for s1.
    torch.testing.assert_close(grad_stdev, torch.tensor([0.0, 1 / 6]))


def test_plain_pgpe_gradient() -> None:
    noise = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    grad_center, grad_stdev = pgpe_gradients(noise, torch.tensor([0.5, -0.5]), torch.ones(2), symmetric=False)
    torch.testing.assert_close(grad_center, torch.tensor([0.5, 0.5]))  # (0.5 s0 - 0.5 s1) / 2
    torch.testing.assert_close(grad_stdev, torch.tensor([0.0, 1.0]))  # (0.5 (0, 3) - 0.5 (0, -1)) / 2


def test_pgpe_step_applies_the_gradients(make_problem: Callable[..., Problem]) -> None:
    problem = make_problem(d=3)
    pgpe = PGPE(problem, popsize=6, center_learning_rate=0.5, stdev_learning_rate=0.3, stdev_init=1.0, optimizer=None)
    center, stdev = pgpe.center.clone(), pgpe.stdev.clone()
    pgpe.step()
    values = pgpe.population.values
    torch.testing.assert_close(values[0::2] + values[1::2], 2 * center.expand(3, 3))  # mirrored pairs
    utilities = rank(pgpe.population.evals[:, 0], "centered", higher_is_better=False).float()
    grad_center, grad_stdev = pgpe_gradients(values - center, utilities, stdev, symmetric=True)
    torch.testing.assert_close(pgpe.status["center"], center + 0.5 * grad_center)
    expected_stdev = torch.clamp(stdev + 0.3 * grad_stdev, 0.8 * stdev, 1.2 * stdev)
    torch.testing.assert_close(pgpe.status["stdev"], expected_stdev)


def test_radius_init_gives_equal_stdevs_of_that_norm(make_problem: Callable[..., Problem]) -> None:
    assert stdev_from_radius(3.0, 9) == 1.0
    pgpe = PGPE(make_problem(d=4), popsize=4, center_learning_rate=0.1, stdev_learning_rate=0.1, radius_init=2.0)
    assert torch.equal(pgpe.status["stdev"], torch.ones(4))


def test_limit_stdev() -> None:
    old, new = torch.ones(3), torch.tensor([2.0, 0.5, 1.1])
    assert torch.equal(limit_stdev(old, new, max_change=torch.tensor(0.2)), torch.tensor([1.2, 0.8, 1.1]))
    limited = limit_stdev(old, new, max_change=torch.tensor(0.2), lower=torch.tensor(0.9), upper=torch.tensor(1.15))
    assert torch.equal(limited, torch.tensor([1.15, 0.9, 1.1]))


def test_stdev_max_change_limits_every_pgpe_step(make_problem: Callable[..., Problem]) -> None:
    pgpe = PGPE(make_problem(), popsize=10, center_learning_rate=0.1, stdev_learning_rate=5.0, stdev_init=1.0)
    for _ in range(5):
        before = pgpe.stdev.clone()
        pgpe.step()
        ratio = pgpe.stdev / before
        assert bool((ratio >= 0.8 - 1e-6).all()) and bool((ratio <= 1.2 + 1e-6).all())


def test_stdev_min_and_max_clamp(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0, stdev_min=0.9, stdev_max=1.05, stdev_learning_rate=10.0)
    snes.run(3)
    assert bool((snes.stdev >= 0.9).all()) and bool((snes.stdev <= 1.05).all())


def test_snes_default_hyperparameters(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(d=10), stdev_init=1.0)
    assert snes.popsize == 10  # 4 + floor(3 ln 10)
    assert snes.stdev_learning_rate == pytest.approx(0.2 * (3 + 2.302585093) / 10**0.5)
    scaled = SNES(make_problem(d=10), stdev_init=1.0, stdev_learning_rate=0.5)
    assert scaled.stdev_learning_rate == pytest.approx(0.5 * snes.stdev_learning_rate)
    unscaled = SNES(make_problem(), stdev_init=1.0, stdev_learning_rate=0.5, scale_learning_rate=False)
    assert unscaled.stdev_learning_rate == 0.5


def test_xnes_defaults_and_full_covariance(make_problem: Callable[..., Problem]) -> None:
    xnes = XNES(make_problem(d=4), stdev_init=[1.0, 2.0, 3.0, 4.0])
    assert xnes.b_learning_rate == xnes.stdev_learning_rate == pytest.approx(0.6 * (3 + 1.386294361) / 8)
    assert torch.equal(xnes.status["stdev"], torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])))
    xnes.run(3)
    assert xnes.status["stdev"].shape == (4, 4)


def test_center_init_is_used_and_default_lies_in_the_initial_bounds(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(d=3), stdev_init=1.0, center_init=[1.0, 2.0, 3.0])
    assert snes.status["center"].tolist() == [1.0, 2.0, 3.0]
    center = SNES(make_problem(d=50), stdev_init=1.0).status["center"]
    assert bool((center.abs() <= 3.0).all())


BAD_ARGUMENTS: list[tuple[type, dict[str, Any], str]] = [
    (PGPE, {"popsize": 7, "stdev_init": 1.0}, "popsize must be even for symmetric sampling"),
    (PGPE, {"popsize": 8}, "Exactly one of stdev_init and radius_init must be given"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "radius_init": 1.0}, "Exactly one of stdev_init and radius_init"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "optimizer": "rmsprop"}, "Unknown optimizer 'rmsprop'"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "ranking_method": "ordinal"}, "Unknown ranking method 'ordinal'"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "center_learning_rate": -0.1}, "center_learning_rate must be a positive"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "stdev_learning_rate": -0.1}, "stdev_learning_rate must be a positive"),
    (PGPE, {"popsize": 8, "stdev_init": -1.0}, "stdev_init must be positive everywhere"),
    (PGPE, {"popsize": 8, "stdev_init": [1.0, 2.0]}, r"one value per decision variable \(5\); got shape \(2,\)"),
    (
        PGPE,
        {"popsize": 8, "stdev_init": 1.0, "center_init": [0.0]},
        "center_init must be a scalar or have one value per",
    ),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "obj_index": 1}, "obj_index must be None or 0"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "num_interactions": 100}, "num_interactions needs a problem that counts"),
    (PGPE, {"popsize": 8, "stdev_init": 1.0, "popsize_max": 4}, "popsize_max must be an int >= 8"),
    (SNES, {"stdev_init": 1.0, "stdev_learning_rate": -1.0}, "stdev_learning_rate must be a positive"),
    (XNES, {"stdev_init": 1.0, "b_learning_rate": 0.0}, "b_learning_rate must be a positive"),
    (CEM, {"popsize": 10, "parenthood_ratio": 0.1, "stdev_init": 1.0}, "at least 2 are needed"),
    (CEM, {"popsize": 10, "parenthood_ratio": 1.5, "stdev_init": 1.0}, r"parenthood_ratio must be in \(0, 1\]"),
    (CMAES, {"stdev_init": -0.5}, "stdev_init must be a positive number"),
    (CMAES, {"stdev_init": 0.5, "popsize": 1}, "popsize must be an int >= 2"),
    (GeneticAlgorithm, {"popsize": 10, "mutation_stdev": 0.1, "num_elites": 10}, "num_elites must be smaller"),
    (GeneticAlgorithm, {"popsize": 10, "mutation_stdev": 0.1, "truncation_ratio": 0.2, "num_parents": 2}, "not both"),
    (GeneticAlgorithm, {"popsize": 10, "mutation_stdev": -0.1}, "mutation_stdev must be a positive number"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_ARGUMENTS)
def test_bad_arguments(cls: type, kwargs: dict[str, Any], message: str, make_problem: Callable[..., Problem]) -> None:
    if cls is PGPE:
        kwargs = {"center_learning_rate": 0.1, "stdev_learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        cls(make_problem(d=5), **kwargs)


class CountingProblem(Problem):
    """A sphere that reports 7 environment interactions per evaluated solution."""

    def __init__(self) -> None:
        sphere = lambda x: (x**2).sum(-1)  # noqa: E731
        super().__init__("min", sphere, solution_length=4, seed=0, vectorized=True, initial_bounds=(-1, 1))
        self.interactions = 0

    def _evaluate_local(self, values: np.ndarray, first_index: int, eval_round: int) -> EvalResult:
        result = super()._evaluate_local(values, first_index, eval_round)
        result.interactions = 7 * len(values)
        return result

    def _apply_eval_result(self, result: EvalResult) -> None:
        self.interactions += result.interactions

    def _extra_status(self, batch: SolutionBatch | None = None) -> dict[str, Any]:
        return {"total_interaction_count": self.interactions}


@pytest.mark.parametrize(("popsize_max", "expected"), [(None, 8), (4, 4)])
def test_num_interactions_extends_the_population(popsize_max: int | None, expected: int) -> None:
    pgpe = PGPE(
        CountingProblem(),
        popsize=4,
        center_learning_rate=0.1,
        stdev_learning_rate=0.1,
        stdev_init=1.0,
        num_interactions=50,  # one batch makes 28 interactions, two make 56 > 50
        popsize_max=popsize_max,
    )
    pgpe.run(2)
    assert len(pgpe.population) == pgpe.status["popsize"] == expected
    assert pgpe.status["total_interaction_count"] == 2 * 7 * expected
