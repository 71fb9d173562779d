"""Every algorithm solves a 10-D sphere and reaches a modest Rastrigin target, minimising or maximising."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from hpcne.algorithms import ALGORITHMS, SearchAlgorithm
from hpcne.core import Problem

# (configuration, target on f, step budget) per algorithm; the targets are on the best f seen.
SPHERE: dict[str, tuple[dict[str, Any], float, int]] = {
    "pgpe": ({"popsize": 20, "center_learning_rate": 0.05, "stdev_learning_rate": 0.1, "radius_init": 3.0}, 0.1, 300),
    "snes": ({"stdev_init": 1.0}, 1e-6, 300),
    "xnes": ({"stdev_init": 1.0}, 1e-3, 400),
    "cem": ({"popsize": 50, "parenthood_ratio": 0.2, "stdev_init": 1.0, "stdev_max_change": 0.2}, 1e-4, 100),
    "cmaes": ({"stdev_init": 1.0}, 1e-8, 300),
    "ga": ({"popsize": 50, "mutation_stdev": 0.05}, 1e-2, 200),
}
RASTRIGIN: dict[str, tuple[dict[str, Any], float, int]] = {
    "pgpe": ({"popsize": 50, "center_learning_rate": 0.05, "stdev_learning_rate": 0.1, "stdev_init": 1.0}, 10.0, 300),
    "snes": ({"stdev_init": 2.0, "popsize": 50}, 5.0, 300),
    "xnes": ({"stdev_init": 2.0, "popsize": 50}, 5.0, 300),
    "cem": ({"popsize": 100, "parenthood_ratio": 0.1, "stdev_init": 2.0}, 5.0, 100),
    "cmaes": ({"stdev_init": 2.0, "popsize": 50}, 3.0, 200),
    "ga": ({"popsize": 100, "mutation_stdev": 0.1}, 10.0, 100),
}
CASES = [
    pytest.param(function, d, name, *table[name], id=f"{function}-{name}")
    for function, d, table in (("sphere", 10, SPHERE), ("rastrigin", 5, RASTRIGIN))
    for name in sorted(table)
]


def run_until(searcher: SearchAlgorithm, target: float, budget: int) -> float:
    """Step until the best f (the sign-adjusted best evaluation) is below ``target``; return it."""
    sign = 1.0 if searcher.problem.objective_sense == "min" else -1.0
    while searcher.step_count < budget:
        searcher.step()
        if sign * searcher.status["best_eval"] < target:
            break
    return sign * searcher.status["best_eval"]


@pytest.mark.parametrize("sense", ["min", "max"])
@pytest.mark.parametrize(("function", "d", "name", "config", "target", "budget"), CASES)
def test_reaches_target(
    function: str,
    d: int,
    name: str,
    config: dict[str, Any],
    target: float,
    budget: int,
    sense: str,
    make_problem: Callable[..., Problem],
) -> None:
    searcher = ALGORITHMS[name](make_problem(function, d=d, sense=sense, seed=1), **config)
    assert run_until(searcher, target, budget) < target


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_maximising_the_negation_mirrors_minimising(name: str, make_problem: Callable[..., Problem]) -> None:
    config = SPHERE[name][0]
    minimiser = ALGORITHMS[name](make_problem(sense="min", seed=3), **config)
    maximiser = ALGORITHMS[name](make_problem(sense="max", seed=3), **config)
    minimiser.run(5)
    maximiser.run(5)
    assert torch.equal(minimiser.population.values, maximiser.population.values)
    assert torch.equal(minimiser.population.evals, -maximiser.population.evals)
    assert minimiser.status["best_eval"] == -maximiser.status["best_eval"]
    assert minimiser.status["worst_eval"] == -maximiser.status["worst_eval"]
