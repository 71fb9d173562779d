"""CoSyNE: cooperative synapse neuroevolution (Gomez, Schmidhuber, Miikkulainen, JMLR 9, 2008)."""

from __future__ import annotations

from typing import ClassVar

from hpcne.algorithms.base import SearchAlgorithm, check_int
from hpcne.algorithms.ga import take_best
from hpcne.core import Problem, SolutionBatch
from hpcne.operators import CosynePermutation, GaussianMutation, OnePointCrossOver, SimulatedBinaryCrossOver

__all__ = ["Cosyne"]


class Cosyne(SearchAlgorithm):
    """CoSyNE, as EvoTorch's ``Cosyne``.

    Each step: the best quarter of the population are parents; tournaments among them choose
    pairs that a one-point cross-over (or SBX, with ``eta``) recombines into children, which a
    Gaussian mutation then perturbs (unless ``mutation_stdev`` is None); the whole population is
    permuted gene by gene (:class:`~hpcne.operators.CosynePermutation`). Elites (if any),
    children and the permuted population are evaluated together, and the best ``popsize`` of
    them form the next population. The first step evaluates the initial population first.
    """

    name: ClassVar[str] = "cosyne"
    _carries_population: ClassVar[bool] = True

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        tournament_size: int,
        mutation_stdev: float | None,
        mutation_probability: float | None = None,
        permute_all: bool = False,
        num_elites: int | None = None,
        elitism_ratio: float | None = None,
        eta: float | None = None,
        num_children: int | None = None,
    ) -> None:
        """Create CoSyNE.

        Args:
            problem: The problem (floating-point dtype).
            popsize: Solutions per generation (>= 4, so that there are parents).
            tournament_size: Parents drawn for each tournament.
            mutation_stdev: Stdev of the Gaussian mutation of the children; None for no mutation.
            mutation_probability: Chance of each gene to mutate (None: every gene).
            permute_all: Permute every solution, not only a rank-dependent subset.
            num_elites: Best solutions carried over unchanged (as copies re-evaluated with the rest).
            elitism_ratio: ``num_elites`` as a fraction of ``popsize``, instead.
            eta: Use simulated binary cross-over with this distribution index.
            num_children: Children per step (even); twice the number of parents by default.
        """
        super().__init__(problem)
        self.popsize = check_int("popsize", popsize, minimum=4)
        if mutation_stdev is None and mutation_probability is not None:
            raise ValueError(
                "mutation_probability needs mutation_stdev: with mutation_stdev=None there is no mutation."
            )
        if num_elites is not None and elitism_ratio is not None:
            raise ValueError("Give num_elites or elitism_ratio, not both.")
        if elitism_ratio is not None:
            num_elites = int(self.popsize * float(elitism_ratio))
        self.num_elites = 0 if num_elites is None else check_int("num_elites", num_elites, minimum=0)
        crossing = {"tournament_size": tournament_size}
        crossing.update({"cross_over_rate": 2.0} if num_children is None else {"num_children": num_children})
        self.cross_over = (
            OnePointCrossOver(problem, **crossing)
            if eta is None
            else SimulatedBinaryCrossOver(problem, eta=eta, **crossing)
        )
        self.mutation = (
            None
            if mutation_stdev is None
            else GaussianMutation(problem, stdev=mutation_stdev, mutation_probability=mutation_probability)
        )
        self.permutation = CosynePermutation(problem, permute_all=permute_all)

    def _step(self) -> None:
        """Breed, permute, evaluate the candidates and keep the best ``popsize``."""
        population = self.population
        if population is None:
            population = self.problem.generate_batch(self.popsize)
            self.problem.evaluate(population)
        ranked = take_best(population, max(self.num_elites, self.popsize // 4))
        children = self.cross_over(ranked[: self.popsize // 4])
        if self.mutation is not None:
            children = self.mutation(children)
        candidates = [children, self.permutation(population)]
        if self.num_elites:
            candidates.insert(0, ranked[: self.num_elites].clone())
        extended = SolutionBatch.cat(candidates)
        self.problem.evaluate(extended)
        self.population = take_best(extended, self.popsize)
