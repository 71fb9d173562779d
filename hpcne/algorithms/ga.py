"""A truncation-selection genetic algorithm for neuroevolution (Such et al., arXiv:1712.06567, 2017)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from hpcne.algorithms.base import SearchAlgorithm, check_int, check_positive
from hpcne.algorithms.ranking import best_first
from hpcne.core import Problem, SolutionBatch

__all__ = ["GeneticAlgorithm"]


class GeneticAlgorithm(SearchAlgorithm):
    """The Deep Neuroevolution GA: mutation-only offspring of the top ``T`` plus unchanged elites.

    The first step evaluates ``problem.generate_batch(popsize)``. Every later step keeps the best
    ``num_elites`` solutions unchanged (with their known fitness) and fills the rest of the
    population with children ``parent + mutation_stdev * N(0, I)`` of parents drawn uniformly from
    the best ``T``, clipped to the problem's hard bounds when it has them. With
    ``re_evaluate_elites``, the best ``num_elite_candidates`` are first evaluated
    ``elite_evaluations`` more times each, and the elites are chosen (and scored) by the mean of
    those evaluations, which filters out lucky single evaluations on noisy problems.
    """

    name: ClassVar[str] = "ga"
    _carries_population: ClassVar[bool] = True

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        mutation_stdev: float,
        truncation_ratio: float | None = None,
        num_parents: int | None = None,
        num_elites: int = 1,
        re_evaluate_elites: bool = False,
        num_elite_candidates: int = 10,
        elite_evaluations: int = 30,
    ) -> None:
        """Create the GA.

        Args:
            problem: The problem to solve.
            popsize: Solutions per generation, elites included.
            mutation_stdev: Stdev of the Gaussian mutation.
            truncation_ratio: Fraction of the population that may become parents; 0.2 when neither
                this nor ``num_parents`` is given.
            num_parents: Number of parents ``T``, instead of ``truncation_ratio``.
            num_elites: Best solutions copied unchanged into the next generation (0 to disable).
            re_evaluate_elites: Choose the elites by the mean of extra evaluations.
            num_elite_candidates: How many of the best solutions are re-evaluated.
            elite_evaluations: Extra evaluations of each candidate.
        """
        super().__init__(problem)
        self.popsize = check_int("popsize", popsize, minimum=2)
        self.mutation_stdev = check_positive("mutation_stdev", mutation_stdev)
        if truncation_ratio is not None and num_parents is not None:
            raise ValueError(
                f"Give truncation_ratio or num_parents, not both; got truncation_ratio={truncation_ratio!r} "
                f"and num_parents={num_parents!r}."
            )
        if num_parents is None:
            ratio = 0.2 if truncation_ratio is None else truncation_ratio
            if not 0 < ratio <= 1:
                raise ValueError(f"truncation_ratio must be in (0, 1]; got {ratio!r}.")
            num_parents = max(1, math.floor(ratio * self.popsize))
        self.num_parents = check_int("num_parents", num_parents, minimum=1)
        if self.num_parents > self.popsize:
            raise ValueError(
                f"num_parents ({num_parents}) cannot exceed popsize ({popsize}); lower num_parents or raise popsize."
            )
        self.num_elites = check_int("num_elites", num_elites, minimum=0)
        if self.num_elites >= self.popsize:
            raise ValueError(
                f"num_elites must be smaller than popsize to leave room for children; got {num_elites} "
                f"elites for a popsize of {popsize}."
            )
        self.re_evaluate_elites = bool(re_evaluate_elites)
        self.num_elite_candidates = min(
            check_int("num_elite_candidates", num_elite_candidates, minimum=max(1, self.num_elites)),
            self.popsize,
        )
        self.elite_evaluations = check_int("elite_evaluations", elite_evaluations, minimum=1)

    def _step(self) -> None:
        """Evaluate the first population, or breed the next one from the current population."""
        if self.population is None:
            population = self.problem.generate_batch(self.popsize)
            self.problem.evaluate(population)
        else:
            order = best_first(self.population.evals[:, 0], higher_is_better=self._higher_is_better)
            children = self._children(self.population.values[order[: self.num_parents]])
            self.problem.evaluate(children)
            population = SolutionBatch.cat([self._elites(order), children]) if self.num_elites else children
        self.population = population

    def _children(self, parents: torch.Tensor) -> SolutionBatch:
        """Mutate uniformly chosen parents into ``popsize - num_elites`` children."""
        count = self.popsize - self.num_elites
        picks = torch.randint(len(parents), (count,), generator=self._generator)
        noise = self.problem.make_gaussian(count, self.problem.solution_length, generator=self._generator)
        values = parents[picks] + self.mutation_stdev * noise
        if self.problem.lower_bounds is not None:
            values = torch.clamp(values, self.problem.lower_bounds, self.problem.upper_bounds)
        return SolutionBatch(self.problem, values=values)

    def _elites(self, order: torch.Tensor) -> SolutionBatch:
        """Return the elites of the current population, re-evaluated when so configured."""
        if not self.re_evaluate_elites:
            return self.population.take(order[: self.num_elites])
        candidates = self.population.take(order[: self.num_elite_candidates])
        trials = SolutionBatch(self.problem, values=candidates.values.repeat(self.elite_evaluations, 1))
        self.problem.evaluate(trials)
        candidates.set_evals(trials.evals[:, 0].reshape(self.elite_evaluations, -1).mean(dim=0))
        ranked = best_first(candidates.evals[:, 0], higher_is_better=self._higher_is_better)
        return candidates.take(ranked[: self.num_elites])
