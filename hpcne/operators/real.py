"""Mutations and cross-overs for real, integer and boolean vectors, and CoSyNE's permutation."""

from __future__ import annotations

import torch

from hpcne.operators.base import CopyingOperator, CrossOver
from hpcne.problem import Problem
from hpcne.solution import SolutionBatch

__all__ = [
    "CosynePermutation",
    "GaussianMutation",
    "MultiPointCrossOver",
    "OnePointCrossOver",
    "PolynomialMutation",
    "SimulatedBinaryCrossOver",
    "TwoPointCrossOver",
]


def _check_probability(value: float | None) -> float | None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"mutation_probability must be in [0, 1] (or None for every gene); got {value!r}.")
    return None if value is None else float(value)


def _require_float(problem: Problem, operator: str) -> None:
    if not problem.dtype.is_floating_point:
        raise ValueError(
            f"{operator} works on floating-point solutions, but the problem's dtype is {problem.dtype}; "
            "use a cross-over of points (OnePointCrossOver, ...) or a mutation function for other dtypes."
        )


class GaussianMutation(CopyingOperator):
    """Adds ``stdev * N(0, 1)`` to each gene (with ``mutation_probability``, else to all); clips to bounds.

    Reference: S. Luke, Essentials of Metaheuristics, 2nd ed., 2013.
    """

    def __init__(self, problem: Problem, *, stdev: float, mutation_probability: float | None = None) -> None:
        """Create the mutation.

        Args:
            problem: The problem (floating-point dtype).
            stdev: Standard deviation of the added noise (positive).
            mutation_probability: Chance of each gene to mutate; None mutates every gene.
        """
        super().__init__(problem)
        _require_float(problem, "GaussianMutation")
        if not float(stdev) > 0:
            raise ValueError(f"stdev must be positive; got {stdev!r}.")
        self.stdev = float(stdev)
        self.mutation_probability = _check_probability(mutation_probability)

    def _do(self, batch: SolutionBatch) -> SolutionBatch:
        values = batch.values.clone()
        noise = torch.randn(values.shape, generator=self.problem.generator, dtype=values.dtype)
        if self.mutation_probability is not None:
            noise = noise * (self._uniform(values.shape) < self.mutation_probability)
        return SolutionBatch(self.problem, values=self._respect_bounds(values + self.stdev * noise))


class PolynomialMutation(CopyingOperator):
    """Deb's bounded polynomial mutation, with distribution index ``eta`` (default 20).

    Reference: K. Deb, M. Goyal, A combined genetic adaptive search (GeneAS) for engineering
    design, Computer Science and Informatics 26(4), 1996. The problem needs hard ``bounds``.
    """

    def __init__(
        self, problem: Problem, *, eta: float | None = None, mutation_probability: float | None = None
    ) -> None:
        """Create the mutation.

        Args:
            problem: The problem (floating-point dtype, with ``bounds``).
            eta: Distribution index: larger values make smaller moves (default 20).
            mutation_probability: Chance of each gene to mutate; None mutates every gene.
        """
        super().__init__(problem)
        _require_float(problem, "PolynomialMutation")
        if problem.lower_bounds is None:
            raise ValueError("PolynomialMutation needs a problem with hard bounds; pass bounds=(lower, upper).")
        self.eta = 20.0 if eta is None else float(eta)
        self.mutation_probability = _check_probability(mutation_probability)

    def _do(self, batch: SolutionBatch) -> SolutionBatch:
        x = batch.values.double()
        lower, upper = self.problem.lower_bounds.double(), self.problem.upper_bounds.double()
        span = upper - lower
        r = self._uniform(x.shape)
        power = 1.0 / (self.eta + 1.0)
        below = 2 * r + (1 - 2 * r) * (1 - (x - lower) / span) ** (self.eta + 1)
        above = 2 * (1 - r) + 2 * (r - 0.5) * (1 - (upper - x) / span) ** (self.eta + 1)
        delta = torch.where(r < 0.5, below**power - 1, 1 - above**power)
        if self.mutation_probability is not None:
            delta = delta * (self._uniform(x.shape) < self.mutation_probability)
        mutated = (x + delta * span).to(batch.values_dtype)
        return SolutionBatch(self.problem, values=self._respect_bounds(mutated))


class MultiPointCrossOver(CrossOver):
    """Cuts each pair of parents at ``num_points`` random points and swaps alternate segments.

    Works for any dtype. Reference: S. Luke, Essentials of Metaheuristics, 2nd ed., 2013.
    """

    # Subclasses with a fixed number of cuts set it here (and take no num_points).
    _fixed_points: int | None = None

    def __init__(
        self,
        problem: Problem,
        *,
        tournament_size: int,
        obj_index: int | None = None,
        num_points: int | None = None,
        num_children: int | None = None,
        cross_over_rate: float | None = None,
    ) -> None:
        """Create the cross-over (``num_points`` >= 1; see :class:`~hpcne.operators.base.CrossOver`)."""
        super().__init__(
            problem,
            tournament_size=tournament_size,
            obj_index=obj_index,
            num_children=num_children,
            cross_over_rate=cross_over_rate,
        )
        if self._fixed_points is not None:
            if num_points not in (None, self._fixed_points):
                raise ValueError(f"{type(self).__name__} cuts at {self._fixed_points} point(s); got {num_points=}.")
            num_points = self._fixed_points
        if num_points is None or int(num_points) < 1:
            raise ValueError(f"num_points must be an int >= 1; got {num_points!r}.")
        self.num_points = int(num_points)

    def _do_cross_over(self, parents1: torch.Tensor, parents2: torch.Tensor) -> SolutionBatch:
        pairs, length = parents1.shape
        genes = torch.arange(length).expand(pairs, length)
        if self.num_points == 1:  # a cut strictly inside the vector, so both parents contribute
            swap = genes >= self._randint((pairs, 1), length - 1) + 1
        else:
            cuts = self._randint((pairs, self.num_points), length + 1)
            swap = torch.zeros((pairs, length), dtype=torch.bool)
            for i in range(self.num_points):
                swap ^= genes >= cuts[:, i : i + 1]
        children = torch.cat([torch.where(swap, parents1, parents2), torch.where(swap, parents2, parents1)])
        return self._children(children)


class OnePointCrossOver(MultiPointCrossOver):
    """Cuts each pair of parents at one random point: ``[a0 a1 | b2 b3]`` and ``[b0 b1 | a2 a3]``."""

    _fixed_points = 1


class TwoPointCrossOver(MultiPointCrossOver):
    """Cuts each pair of parents at two random points and swaps the middle segment."""

    _fixed_points = 2


class SimulatedBinaryCrossOver(CrossOver):
    """Simulated binary cross-over (SBX) with distribution index ``eta``, for floating-point vectors.

    Reference: K. Deb, R. B. Agrawal, Simulated binary crossover for continuous search space,
    Complex Systems 9, 1995.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        tournament_size: int,
        eta: float,
        obj_index: int | None = None,
        num_children: int | None = None,
        cross_over_rate: float | None = None,
    ) -> None:
        """Create the cross-over (``eta`` > 0: larger keeps children closer to their parents)."""
        super().__init__(
            problem,
            tournament_size=tournament_size,
            obj_index=obj_index,
            num_children=num_children,
            cross_over_rate=cross_over_rate,
        )
        _require_float(problem, "SimulatedBinaryCrossOver")
        if not float(eta) > 0:
            raise ValueError(f"eta must be positive; got {eta!r}.")
        self.eta = float(eta)

    def _do_cross_over(self, parents1: torch.Tensor, parents2: torch.Tensor) -> SolutionBatch:
        u = self._uniform(parents1.shape)
        power = 1.0 / (self.eta + 1.0)
        beta = torch.where(u <= 0.5, (2 * u) ** power, (1 / (2 * (1 - u))) ** power).to(parents1.dtype)
        children1 = 0.5 * ((1 + beta) * parents1 + (1 - beta) * parents2)
        children2 = 0.5 * ((1 - beta) * parents1 + (1 + beta) * parents2)
        return self._children(torch.cat([children1, children2]))


class CosynePermutation(CopyingOperator):
    """CoSyNE's permutation: each gene's values are shuffled among a subset of the solutions.

    A solution takes part in a gene's shuffle with probability ``1 - p^(1/n)``, ``p`` being its
    centered rank shifted to ``[0, 1]`` (1 for the best) and ``n`` the solution length, so better
    solutions are disturbed less; with ``permute_all`` every solution takes part. Reference:
    F. Gomez, J. Schmidhuber, R. Miikkulainen, Accelerated neural evolution through
    cooperatively coevolved synapses, JMLR 9, 2008.
    """

    def __init__(self, problem: Problem, obj_index: int | None = None, *, permute_all: bool = False) -> None:
        """Create the operator (``obj_index`` must be None or 0)."""
        super().__init__(problem)
        if obj_index not in (None, 0):
            raise ValueError(f"obj_index must be None or 0; got {obj_index!r}. hpcne problems have one objective.")
        self.permute_all = bool(permute_all)

    def _do(self, batch: SolutionBatch) -> SolutionBatch:
        values = batch.values
        n, length = values.shape
        if self.permute_all:
            chosen = torch.ones((n, length), dtype=torch.bool)
        else:
            rank = batch.utility(ranking_method="centered").double() + 0.5
            chosen = self._uniform((n, length)) <= (1 - rank ** (1 / length)).unsqueeze(1)
        rows = torch.arange(n, dtype=torch.float64).unsqueeze(1).expand(n, length)
        # Per gene, the chosen rows in random order give their values to the chosen rows in row
        # order; unchosen rows sort last in both orders (stably), so they keep their own values.
        sources = torch.argsort(torch.where(chosen, self._uniform((n, length)), 2.0 + rows), dim=0, stable=True)
        targets = torch.argsort(torch.where(chosen, rows, 2.0 * n + rows), dim=0, stable=True)
        permuted = torch.empty_like(values).scatter_(0, targets, values.gather(0, sources))
        return SolutionBatch(self.problem, values=permuted)
