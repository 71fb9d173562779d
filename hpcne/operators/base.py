"""Operator base classes: mutations that copy a batch, and cross-overs that select parents by tournament."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from hpcne.problem import Problem
from hpcne.solution import SolutionBatch

__all__ = ["CopyingOperator", "CrossOver", "Operator", "OperatorLike", "apply_operators"]


class Operator:
    """Turns a batch into new solutions; random numbers come from the problem's generator.

    Drawing from the problem's generator keeps a run reproducible from its seed, and the
    generator is part of the problem's state, so a restarted run continues bit for bit.
    Subclasses implement :meth:`_do`, which must leave the input batch unchanged.
    """

    def __init__(self, problem: Problem) -> None:
        """Create the operator for ``problem`` (its dtype, bounds and generator)."""
        self.problem = problem

    def __call__(self, batch: SolutionBatch) -> SolutionBatch:
        """Return the new solutions made from ``batch`` (not evaluated)."""
        return self._do(batch)

    def _do(self, batch: SolutionBatch) -> SolutionBatch:
        raise NotImplementedError

    def _respect_bounds(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` clipped to the problem's hard bounds, if it has them (booleans need none)."""
        lower, upper = self.problem.lower_bounds, self.problem.upper_bounds
        if lower is None or values.dtype == torch.bool:
            return values
        return torch.clamp(values, lower.to(values), upper.to(values))

    def _uniform(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.problem.generator, dtype=torch.float64)

    def _randint(self, shape: tuple[int, ...], n: int) -> torch.Tensor:
        return torch.randint(n, shape, generator=self.problem.generator)


class CopyingOperator(Operator):
    """An operator whose result is a new batch (EvoTorch's name; every hpcne operator copies)."""


class CrossOver(CopyingOperator):
    """Chooses parents by tournament and recombines them pairwise into children.

    Each tournament draws ``tournament_size`` solutions at random (with replacement) and the one
    with the best utility becomes a parent. There are as many tournaments as children:
    ``num_children``, or ``len(batch) * cross_over_rate`` rounded to an even number, or
    ``len(batch)`` rounded up to even. Subclasses implement :meth:`_do_cross_over`, which turns
    ``parents1[i]`` and ``parents2[i]`` into two children.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        tournament_size: int,
        obj_index: int | None = None,
        num_children: int | None = None,
        cross_over_rate: float | None = None,
    ) -> None:
        """Create the cross-over.

        Args:
            problem: The problem the solutions belong to.
            tournament_size: Solutions drawn for each tournament (>= 1).
            obj_index: None or 0 (hpcne problems have one objective).
            num_children: Children per call (an even number).
            cross_over_rate: Children per call as a multiple of the batch size, instead.
        """
        super().__init__(problem)
        if obj_index not in (None, 0):
            raise ValueError(f"obj_index must be None or 0; got {obj_index!r}. hpcne problems have one objective.")
        if int(tournament_size) < 1:
            raise ValueError(f"tournament_size must be at least 1; got {tournament_size!r}.")
        if num_children is not None and cross_over_rate is not None:
            raise ValueError("Give num_children or cross_over_rate, not both.")
        if num_children is not None and (int(num_children) < 2 or int(num_children) % 2):
            raise ValueError(
                f"num_children must be a positive even number (children come in pairs); got {num_children}."
            )
        if cross_over_rate is not None and not float(cross_over_rate) > 0:
            raise ValueError(f"cross_over_rate must be positive; got {cross_over_rate!r}.")
        self.tournament_size = int(tournament_size)
        self.num_children = None if num_children is None else int(num_children)
        self.cross_over_rate = None if cross_over_rate is None else float(cross_over_rate)

    def _num_tournaments(self, popsize: int) -> int:
        """How many parents to select: an even number (see the class docstring)."""
        if self.num_children is not None:
            return self.num_children
        if self.cross_over_rate is None:
            return popsize + popsize % 2
        wanted = popsize * self.cross_over_rate
        up, down = math.ceil(wanted), math.floor(wanted)
        if up == down:
            return up + up % 2
        return up if up % 2 == 0 else down  # the even one of the two neighbours

    def _select_parents(self, batch: SolutionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Two equally long tensors of parent values, chosen by tournaments on the centered ranks."""
        utilities = batch.utility(ranking_method="centered")
        count = self._num_tournaments(len(batch))
        entrants = self._randint((count, self.tournament_size), len(batch))
        winners = entrants[torch.arange(count), torch.argmax(utilities[entrants], dim=1)]
        parents = batch.values[winners]
        return parents[: count // 2], parents[count // 2 :]

    def _do(self, batch: SolutionBatch) -> SolutionBatch:
        parents1, parents2 = self._select_parents(batch)
        return self._do_cross_over(parents1, parents2)

    def _do_cross_over(self, parents1: torch.Tensor, parents2: torch.Tensor) -> SolutionBatch:
        raise NotImplementedError

    def _children(self, values: torch.Tensor) -> SolutionBatch:
        """A new, unevaluated batch holding ``values``, clipped to the problem's bounds."""
        return SolutionBatch(self.problem, values=self._respect_bounds(values))


# What a genetic algorithm accepts as an operator: an Operator, or a function from values to new values.
OperatorLike = Operator | Callable[[torch.Tensor], Any]


def _apply(batch: SolutionBatch, operator: OperatorLike) -> SolutionBatch:
    if isinstance(operator, Operator):
        return operator(batch)
    if not callable(operator):
        raise TypeError(f"An operator must be an hpcne Operator or a function of values; got {operator!r}.")
    values = torch.as_tensor(operator(batch.values.clone()), dtype=batch.values_dtype)
    if values.shape != batch.values_shape:
        raise ValueError(
            f"The operator function {operator!r} returned values of shape {tuple(values.shape)}; "
            f"it must return the shape it was given, {tuple(batch.values_shape)}."
        )
    return SolutionBatch(batch.problem, values=values)


def apply_operators(
    batch: SolutionBatch, operators: Iterable[Operator | Callable[[torch.Tensor], Any]]
) -> SolutionBatch:
    """Apply operators in turn: each gets the previous one's result (functions get a copy of the values)."""
    for operator in operators:
        batch = _apply(batch, operator)
    return batch
