"""Shared fixtures of the search-algorithm tests: test functions, problems and small configurations."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from hpcne.algorithms import ALGORITHMS, SearchAlgorithm
from hpcne.core import Problem, SolutionBatch


def sphere(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares, row-wise."""
    return (x**2).sum(-1)


def rastrigin(x: torch.Tensor) -> torch.Tensor:
    """Rastrigin's function (A = 10), row-wise; the global minimum 0 is at the origin."""
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def ellipsoid(x: torch.Tensor) -> torch.Tensor:
    """The separable ellipsoid with condition number 1e6, row-wise."""
    d = x.shape[-1]
    return ((10 ** (6 * torch.arange(d, dtype=x.dtype) / (d - 1))) * x**2).sum(-1)


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """Rosenbrock's function, row-wise; the global minimum 0 is at (1, ..., 1)."""
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sphere": sphere,
    "rastrigin": rastrigin,
    "ellipsoid": ellipsoid,
    "rosenbrock": rosenbrock,
}

# Small configurations of every registered algorithm, for tests that only need a working searcher.
SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "pgpe": {"popsize": 8, "center_learning_rate": 0.1, "stdev_learning_rate": 0.1, "stdev_init": 1.0},
    "snes": {"stdev_init": 1.0},
    "xnes": {"stdev_init": 1.0},
    "cem": {"popsize": 10, "parenthood_ratio": 0.3, "stdev_init": 1.0},
    "cmaes": {"stdev_init": 1.0},
    "ga": {"popsize": 10, "mutation_stdev": 0.1, "re_evaluate_elites": True, "num_elite_candidates": 3},
}


class FunctionProblem(Problem):
    """A test problem: a row-wise function (negated when maximising) plus optional Gaussian noise.

    The noise comes from the per-evaluation generator, so it depends on the problem's evaluation round.
    """

    def __init__(
        self, sense: str, function: Callable[[torch.Tensor], torch.Tensor], *, noise: float = 0.0, **options: Any
    ) -> None:
        super().__init__(sense, **options)
        self.function = function
        self.noise = noise

    def _evaluate_batch(self, batch: SolutionBatch) -> None:
        fitness = self.function(batch.values).double()
        if self.noise:
            fitness = fitness + self.noise * torch.randn(len(batch), generator=self.generator, dtype=torch.float64)
        batch.set_evals(fitness if self.objective_sense == "min" else -fitness)


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the tensors here are tiny, and intra-op threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_problem() -> Callable[..., Problem]:
    """Return a factory of test problems (``function`` names one of :data:`FUNCTIONS`)."""

    def make(
        function: str = "sphere", d: int = 10, sense: str = "min", seed: int = 0, noise: float = 0.0, **options: Any
    ) -> Problem:
        options.setdefault("initial_bounds", (-3.0, 3.0))
        return FunctionProblem(sense, FUNCTIONS[function], noise=noise, solution_length=d, seed=seed, **options)

    return make


@pytest.fixture
def functions() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Return the test functions by name."""
    return FUNCTIONS


@pytest.fixture
def make_searcher(make_problem: Callable[..., Problem]) -> Callable[..., SearchAlgorithm]:
    """Return a factory of small searchers of a registered algorithm on a noisy 6-D sphere."""

    def make(name: str, d: int = 6, **problem_options: Any) -> SearchAlgorithm:
        problem = make_problem(d=d, seed=7, noise=0.01, **problem_options)
        return ALGORITHMS[name](problem, **SMALL_CONFIGS[name])

    return make
