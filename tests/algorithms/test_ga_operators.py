"""EvoTorch's GA forms: GeneticAlgorithm with operators, SteadyStateGA.use, Cosyne and MAPElites."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from hpcne.algorithms import Cosyne, GeneticAlgorithm, MAPElites, SteadyStateGA
from hpcne.core import Problem, SolutionBatch
from hpcne.operators import GaussianMutation, OnePointCrossOver, SimulatedBinaryCrossOver


def ga_with_operators(problem: Problem, **options: object) -> GeneticAlgorithm:
    operators = [OnePointCrossOver(problem, tournament_size=4), GaussianMutation(problem, stdev=0.3)]
    return GeneticAlgorithm(problem, popsize=20, operators=operators, **options)


@pytest.mark.parametrize("re_evaluate", [True, False])
def test_elitist_ga_never_loses_its_best_and_solves_the_sphere(
    re_evaluate: bool, make_problem: Callable[..., Problem]
) -> None:
    ga = ga_with_operators(make_problem(d=5), re_evaluate=re_evaluate)
    bests = []
    for _ in range(40):
        ga.step()
        bests.append(ga.status["pop_best_eval"])
    assert all(b <= a for a, b in itertools.pairwise(bests))  # a deterministic problem: elitism keeps the best
    assert bests[-1] < 0.05 * bests[0]
    assert ga.re_evaluate_parents_first is (True if re_evaluate else None)  # a cross-over ranks the parents


def test_non_elitist_children_replace_the_worst_parents(make_problem: Callable[..., Problem]) -> None:
    problem = make_problem(d=4)
    ga = GeneticAlgorithm(problem, popsize=10, operators=[lambda v: v[:4] * 0 + 100.0], elitist=False)
    with pytest.raises(ValueError, match="must return the shape it was given"):
        ga.step()
    ga = GeneticAlgorithm(problem, popsize=10, operators=[lambda v: v + 100.0], elitist=False)
    ga.step()
    assert (ga.population.values.abs() > 90).all()  # as many children as popsize: all children


def test_operator_form_restarts_exactly(make_problem: Callable[..., Problem]) -> None:
    def fresh() -> GeneticAlgorithm:
        return ga_with_operators(make_problem(d=5, noise=0.1))

    ga = fresh()
    ga.run(3)
    state = ga.state_dict()
    ga.run(2)
    again = fresh()
    again.load_state_dict(state)
    again.run(2)
    assert torch.equal(again.population.values, ga.population.values)
    assert torch.equal(again.population.evals, ga.population.evals)


def test_the_two_forms_do_not_mix(make_problem: Callable[..., Problem]) -> None:
    problem = make_problem()
    with pytest.raises(ValueError, match=r"needs operators=.* or mutation_stdev"):
        GeneticAlgorithm(problem, popsize=10)
    with pytest.raises(ValueError, match="mutation_stdev, num_elites belong to the mutation_stdev form"):
        GeneticAlgorithm(problem, popsize=10, operators=[lambda v: v], mutation_stdev=0.1, num_elites=2)
    with pytest.raises(ValueError, match="operators is empty"):
        GeneticAlgorithm(problem, popsize=10, operators=[])
    with pytest.raises(ValueError, match="only with re_evaluate=True"):
        GeneticAlgorithm(
            problem, popsize=10, operators=[lambda v: v], re_evaluate=False, re_evaluate_parents_first=True
        )
    assert GeneticAlgorithm(problem, popsize=10, mutation_stdev=0.1).operators is None  # the configuration form


def test_steady_state_ga_use(make_problem: Callable[..., Problem]) -> None:
    problem = make_problem(d=5)
    ga = SteadyStateGA(problem, popsize=10)
    with pytest.raises(RuntimeError, match="has no operators"):
        ga.step()
    mutation, cross = GaussianMutation(problem, stdev=0.1), SimulatedBinaryCrossOver(problem, tournament_size=3, eta=8)
    ga.use(mutation)
    ga.use(cross)
    assert ga.operators == [cross, mutation] and ga.re_evaluate_parents_first
    with pytest.raises(ValueError, match="already in use"):
        ga.use(GaussianMutation(problem, stdev=0.2))
    ga.run(2)
    assert ga.step_count == 2 and len(ga.population) == 10


@pytest.mark.parametrize("options", [{"mutation_stdev": 0.2}, {"mutation_stdev": None, "eta": 10, "num_elites": 2}])
def test_cosyne_improves_and_checks_its_options(options: dict, make_problem: Callable[..., Problem]) -> None:
    cosyne = Cosyne(make_problem(d=6), popsize=16, tournament_size=3, **options)
    cosyne.step()
    first = cosyne.status["pop_best_eval"]
    cosyne.run(30)
    assert cosyne.status["pop_best_eval"] < first and len(cosyne.population) == 16
    with pytest.raises(ValueError, match="not both"):
        Cosyne(make_problem(), popsize=16, tournament_size=3, mutation_stdev=0.1, num_elites=1, elitism_ratio=0.1)
    with pytest.raises(ValueError, match="needs mutation_stdev"):
        Cosyne(make_problem(), popsize=16, tournament_size=3, mutation_stdev=None, mutation_probability=0.5)


class Features(Problem):
    """Sphere with its first two coordinates as features."""

    def __init__(self) -> None:
        super().__init__("min", solution_length=4, initial_bounds=(-2, 2), eval_data_length=2, seed=0)

    def _evaluate_batch(self, batch: SolutionBatch) -> None:
        values = batch.values.double()
        batch.set_evals((values**2).sum(-1), values[:, :2])


def test_map_elites_keeps_the_best_in_each_cell() -> None:
    grid = MAPElites.make_feature_grid([-1.0, -1.0], [1.0, 1.0], 4, dtype="float64")
    assert grid.shape == (16, 2, 2)
    assert grid[0].tolist() == [[-torch.inf, -1.0], [-torch.inf, -1.0]] and grid[5].tolist() == [[-1.0, 0.0]] * 2
    problem = Features()
    search = MAPElites(problem, operators=[GaussianMutation(problem, stdev=0.5)], feature_grid=grid)
    search.run(5)
    features = search.population.evals[:, 1:]
    inside = ((features >= grid[:, :, 0]) & (features <= grid[:, :, 1])).all(dim=1)
    assert torch.equal(inside[search.filled], torch.ones(int(search.filled.sum()), dtype=torch.bool))
    assert search.filled.sum() >= 12
    with pytest.raises(ValueError, match="eval_data_length >= 1"):
        MAPElites(Problem("min", lambda x: x.sum(), solution_length=2), operators=[lambda v: v], feature_grid=grid)
