"""CMA-ES against pycma: the default strategy parameters, and evaluations to reach 1e-8 on three functions."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np
import pytest
import torch

from hpcne.algorithms import CMAES
from hpcne.core import Problem

cma = pytest.importorskip("cma")

Function = Callable[[torch.Tensor], torch.Tensor]


def pycma_strategy(d: int) -> cma.CMAEvolutionStrategy:
    return cma.CMAEvolutionStrategy(d * [0.0], 0.5, {"verbose": -9, "seed": 1})


@pytest.mark.parametrize("d", [5, 10, 40])
def test_default_parameters_equal_pycma(d: int, make_problem: Callable[..., Problem]) -> None:
    es, cmaes = pycma_strategy(d), CMAES(make_problem(d=d), stdev_init=0.5)
    assert cmaes.popsize == es.sp.popsize and cmaes.mu == es.sp.weights.mu
    np.testing.assert_allclose(cmaes.weights.numpy(), np.asarray(es.sp.weights), rtol=1e-12)
    assert cmaes.mu_eff == pytest.approx(es.sp.weights.mueff, rel=1e-12)
    assert cmaes.c_sigma == pytest.approx(es.adapt_sigma.cs, rel=1e-12)
    assert cmaes.damp_sigma == pytest.approx(es.adapt_sigma.damps, rel=1e-12)
    assert cmaes.c_c == pytest.approx(es.sp.cc, rel=1e-12)
    assert cmaes.c_1 == pytest.approx(es.sp.c1, rel=1e-12)
    assert cmaes.c_mu == pytest.approx(es.sp.cmu, rel=1e-12)


@pytest.mark.parametrize("d", [5, 10, 40])
def test_separable_parameters_equal_pycma(d: int, make_problem: Callable[..., Problem]) -> None:
    es, cmaes = pycma_strategy(d), CMAES(make_problem(d=d), stdev_init=0.5, separable=True)
    assert cmaes.c_c == pytest.approx(es.sp.cc_sep, rel=1e-12)
    assert cmaes.c_1 == pytest.approx(es.sp.c1_sep, rel=1e-12)
    assert cmaes.c_mu == pytest.approx(es.sp.cmu_sep, rel=1e-12)


def test_inactive_weights_are_zero_below_mu(make_problem: Callable[..., Problem]) -> None:
    cmaes = CMAES(make_problem(), stdev_init=0.5, active=False)
    assert bool((cmaes.weights[cmaes.mu :] == 0).all()) and float(cmaes.weights.sum()) == pytest.approx(1.0)


TARGET, SIGMA0, BUDGET, SEEDS = 1e-8, 0.5, 30_000, (0, 1, 2)


def evaluations_ours(f: Function, x0: float, seed: int) -> int:
    problem = Problem("min", f, solution_length=10, vectorized=True, seed=seed, dtype=torch.float64)
    cmaes = CMAES(problem, stdev_init=SIGMA0, center_init=torch.full((10,), x0))
    while cmaes.step_count * cmaes.popsize < BUDGET:
        cmaes.step()
        if cmaes.status["pop_best_eval"] < TARGET:
            break
    return cmaes.step_count * cmaes.popsize


def evaluations_pycma(f: Function, x0: float, seed: int) -> int:
    es = cma.CMAEvolutionStrategy(10 * [x0], SIGMA0, {"seed": seed + 1, "verbose": -9, "tolfun": 0, "tolx": 0})
    while es.countevals < BUDGET and not es.stop():
        solutions = es.ask()
        fitnesses = f(torch.as_tensor(np.array(solutions))).tolist()
        es.tell(solutions, fitnesses)
        if min(fitnesses) < TARGET:
            break
    return es.countevals


@pytest.mark.slow
@pytest.mark.parametrize(("name", "x0"), [("sphere", 1.0), ("ellipsoid", 1.0), ("rosenbrock", 0.0)])
def test_evaluations_to_target_match_pycma(name: str, x0: float, functions: dict[str, Function]) -> None:
    f = functions[name]
    mine = statistics.median(evaluations_ours(f, x0, seed) for seed in SEEDS)
    theirs = statistics.median(evaluations_pycma(f, x0, seed) for seed in SEEDS)
    assert mine < BUDGET and theirs < BUDGET
    assert mine <= 1.5 * theirs, f"hpcne needs {mine} evaluations, pycma {theirs}"
