"""The genetic algorithm's elitism, re-evaluation, bounds and truncation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from hpcne.algorithms import GeneticAlgorithm
from hpcne.core import Problem


def test_first_generation_is_drawn_in_the_initial_bounds(make_problem: Callable[..., Problem]) -> None:
    ga = GeneticAlgorithm(make_problem(initial_bounds=(-0.5, 0.5)), popsize=20, mutation_stdev=0.1)
    ga.step()
    assert len(ga.population) == 20 and bool((ga.population.values.abs() <= 0.5).all())


def test_elites_are_copied_unchanged(make_problem: Callable[..., Problem]) -> None:
    ga = GeneticAlgorithm(make_problem(), popsize=12, mutation_stdev=0.1, num_elites=2, num_parents=3)
    ga.step()
    previous = ga.population
    order = torch.argsort(previous.evals[:, 0])
    ga.step()
    assert len(ga.population) == 12
    assert torch.equal(ga.population.values[:2], previous.values[order[:2]])
    assert torch.equal(ga.population.evals[:2], previous.evals[order[:2]])


def test_children_descend_from_the_truncated_parents(make_problem: Callable[..., Problem]) -> None:
    ga = GeneticAlgorithm(make_problem(), popsize=10, mutation_stdev=1e-3, num_parents=2, num_elites=0)
    ga.step()
    parents = ga.population.values[torch.argsort(ga.population.evals[:, 0])[:2]]
    ga.step()
    distances = torch.cdist(ga.population.values.double(), parents.double())
    assert bool((distances.min(dim=1).values < 0.01).all())


def test_children_are_clipped_to_the_hard_bounds(make_problem: Callable[..., Problem]) -> None:
    ga = GeneticAlgorithm(make_problem(bounds=(-1.0, 1.0)), popsize=20, mutation_stdev=10.0)
    ga.run(3)
    assert bool((ga.population.values.abs() <= 1.0).all())


def test_re_evaluated_elites_carry_their_mean_fitness(make_problem: Callable[..., Problem]) -> None:
    problem = make_problem(noise=1.0)
    rounds = []
    ga = GeneticAlgorithm(
        problem, popsize=10, mutation_stdev=0.1, re_evaluate_elites=True, num_elite_candidates=4, elite_evaluations=50
    )
    ga.after_step_hook.append(lambda: rounds.append(problem.state_dict()["eval_round"]))
    ga.run(2)
    assert rounds == [1, 3]  # the second step evaluates the candidates' trials, then the children
    elite = ga.population[0]
    clean = float((elite.values.double() ** 2).sum())
    assert elite.evaluation == pytest.approx(clean, abs=0.5)  # a mean of 50 noisy evaluations, noise sd 1


def test_default_truncation_ratio(make_problem: Callable[..., Problem]) -> None:
    assert GeneticAlgorithm(make_problem(), popsize=50, mutation_stdev=0.1).num_parents == 10
    assert GeneticAlgorithm(make_problem(), popsize=50, mutation_stdev=0.1, truncation_ratio=0.5).num_parents == 25
