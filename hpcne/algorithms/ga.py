"""Genetic algorithms: EvoTorch's operator-driven GA and SteadyStateGA, and the Deep Neuroevolution GA.

References: S. Luke, Essentials of Metaheuristics, 2nd ed., 2013 (operators, elitism);
F. P. Such et al., Deep Neuroevolution, arXiv:1712.06567, 2017 (the ``mutation_stdev`` form).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

import torch

from hpcne.algorithms.base import SearchAlgorithm, check_int, check_positive
from hpcne.algorithms.ranking import best_first
from hpcne.core import Problem, SolutionBatch
from hpcne.operators import CrossOver, OperatorLike, apply_operators

__all__ = ["GeneticAlgorithm", "SteadyStateGA", "take_best"]

# The options of the Deep Neuroevolution form, with their defaults: refused next to `operators`.
_TRUNCATION_DEFAULTS = {
    "truncation_ratio": None,
    "num_parents": None,
    "num_elites": 1,
    "re_evaluate_elites": False,
    "num_elite_candidates": 10,
    "elite_evaluations": 30,
}


def take_best(batch: SolutionBatch, n: int) -> SolutionBatch:
    """A new batch with copies of the ``n`` best solutions of ``batch``, best first."""
    higher_is_better = batch.problem.objective_sense == "max"
    return batch.take(best_first(batch.evals[:, 0], higher_is_better=higher_is_better)[:n])


class GeneticAlgorithm(SearchAlgorithm):
    """A genetic algorithm: EvoTorch's operator form, or the Deep Neuroevolution GA (``mutation_stdev``).

    **With** ``operators`` (EvoTorch's ``GeneticAlgorithm``): each step applies the operators in
    turn to the population (e.g. a cross-over, then a mutation; functions of the values count as
    mutations) to make children, evaluates them, and forms the next population: with
    ``elitist``, the best ``popsize`` of parents and children; without, the children replace the
    worst parents. With ``re_evaluate`` the parents are evaluated again every step (noisy
    problems); ``re_evaluate_parents_first`` (default: when a cross-over is used, as it ranks
    the parents) evaluates them before the operators run rather than together with the children.
    The first step draws the population from the problem and already makes children.

    **With** ``mutation_stdev`` instead (hpcne's shortcut, as in configuration files): the Deep
    Neuroevolution GA. The first step evaluates ``problem.generate_batch(popsize)``. Every later step keeps the best
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
        operators: Iterable[OperatorLike] | None = None,
        elitist: bool = True,
        re_evaluate: bool = True,
        re_evaluate_parents_first: bool | None = None,
        mutation_stdev: float | None = None,
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
            operators: EvoTorch's form: :mod:`hpcne.operators` instances, or functions mapping a
                tensor of values to a new tensor of the same shape, applied in order.
            elitist: Operator form: keep the best of parents and children (else children
                replace the worst parents).
            re_evaluate: Operator form: evaluate the parents again at every step.
            re_evaluate_parents_first: Operator form: evaluate the parents before the operators
                run (default: when a cross-over is among them); only with ``re_evaluate``.
            mutation_stdev: The Deep Neuroevolution form: stdev of the Gaussian mutation.
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
        self.operators = None if operators is None else list(operators)
        if self.operators is not None:
            truncation = {
                "mutation_stdev": mutation_stdev,
                "truncation_ratio": truncation_ratio,
                "num_parents": num_parents,
                "num_elites": num_elites,
                "re_evaluate_elites": re_evaluate_elites,
                "num_elite_candidates": num_elite_candidates,
                "elite_evaluations": elite_evaluations,
            }
            self._init_operators(elitist, re_evaluate, re_evaluate_parents_first, truncation)
            return
        if mutation_stdev is None:
            raise ValueError(
                "GeneticAlgorithm needs operators=[...] (EvoTorch's form, e.g. [OnePointCrossOver(problem, "
                "tournament_size=4), GaussianMutation(problem, stdev=0.1)]) or mutation_stdev (the Deep "
                "Neuroevolution GA); got neither."
            )
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

    def _init_operators(
        self, elitist: bool, re_evaluate: bool, re_evaluate_parents_first: bool | None, truncation: dict
    ) -> None:
        """Set up EvoTorch's operator form, refusing the options of the Deep Neuroevolution form."""
        given = [k for k, v in truncation.items() if v != _TRUNCATION_DEFAULTS.get(k)]
        if given:
            raise ValueError(
                f"{', '.join(given)} belong to the mutation_stdev form of GeneticAlgorithm; with operators, "
                "leave them out (put a GaussianMutation among the operators instead)."
            )
        if not self.operators and type(self) is GeneticAlgorithm:
            raise ValueError("operators is empty: give at least one operator (a cross-over and/or a mutation).")
        if re_evaluate_parents_first is not None and not re_evaluate:
            raise ValueError("re_evaluate_parents_first applies only with re_evaluate=True; leave it at None.")
        self.elitist = bool(elitist)
        self.re_evaluate = bool(re_evaluate)
        self._parents_first = re_evaluate_parents_first

    @property
    def re_evaluate_parents_first(self) -> bool | None:
        """Operator form: whether parents are evaluated before the operators run (None without re_evaluate)."""
        if self.operators is None or not self.re_evaluate:
            return None
        if self._parents_first is None:
            return any(isinstance(op, CrossOver) for op in self.operators)
        return self._parents_first

    def _step(self) -> None:
        """Take one step of the operator form or of the Deep Neuroevolution form."""
        if self.operators is not None:
            self._step_with_operators()
        else:
            self._step_truncation()

    def _step_with_operators(self) -> None:
        """Make children with the operators, evaluate what needs it, and select the next population."""
        if not self.operators:
            raise RuntimeError(f"{type(self).__name__} has no operators: give them with operators=[...] or use().")
        parents = self.population if self.population is not None else self.problem.generate_batch(self.popsize)
        if self.re_evaluate and not self.re_evaluate_parents_first:
            parents.forget_evals()  # evaluated below, together with the children
        elif self.re_evaluate or not parents.is_evaluated:
            self.problem.evaluate(parents)
        children = apply_operators(parents, self.operators)
        if parents.is_evaluated:
            self.problem.evaluate(children)
        else:  # one evaluation round for parents and children
            extended = SolutionBatch.cat([parents, children])
            self.problem.evaluate(extended)
            parents, children = extended[: len(parents)], extended[len(parents) :]
        self.population = self._select(parents, children)

    def _select(self, parents: SolutionBatch, children: SolutionBatch) -> SolutionBatch:
        """The next population: the best of both (elitist), or the children in place of the worst parents."""
        if self.elitist:
            return take_best(SolutionBatch.cat([parents, children]), self.popsize)
        if len(children) < self.popsize:
            return SolutionBatch.cat([take_best(parents, self.popsize - len(children)), children])
        return take_best(children, self.popsize)

    def _step_truncation(self) -> None:
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


class SteadyStateGA(GeneticAlgorithm):
    """EvoTorch's ``SteadyStateGA``: the operator form of :class:`GeneticAlgorithm`, plus :meth:`use`.

    Operators may be given later with ``use(cross_over)`` and ``use(mutation)``; the cross-over
    then runs first.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        operators: Iterable[OperatorLike] | None = None,
        elitist: bool = True,
        re_evaluate: bool = True,
        re_evaluate_parents_first: bool | None = None,
    ) -> None:
        """Create the GA (see :class:`GeneticAlgorithm`'s operator form)."""
        super().__init__(
            problem,
            popsize=popsize,
            operators=list(operators or ()),
            elitist=elitist,
            re_evaluate=re_evaluate,
            re_evaluate_parents_first=re_evaluate_parents_first,
        )
        self._used: dict[str, OperatorLike] = {}

    def use(self, operator: OperatorLike) -> None:
        """Register the cross-over or the mutation (one of each, before the first step).

        Raises:
            ValueError: If operators were given at construction, or this kind is already registered.
        """
        kind = "cross-over" if isinstance(operator, CrossOver) else "mutation"
        if self.step_count or (self.operators and not self._used):
            raise ValueError("use() is for operators not given at construction, before the first step.")
        if kind in self._used:
            raise ValueError(f"A {kind} operator is already in use: {self._used[kind]!r}.")
        self._used[kind] = operator
        self.operators = [self._used[k] for k in ("cross-over", "mutation") if k in self._used]
