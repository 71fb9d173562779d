"""Solutions and solution batches: parameter rows with their evaluations, and evaluation results."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hpcne.tools import as_numpy

if TYPE_CHECKING:
    from hpcne.problem import Problem

__all__ = ["EvalResult", "Solution", "SolutionBatch", "annotate_solution"]


@dataclass
class EvalResult:
    """What evaluating some solutions produced: fitnesses and the side effects to merge.

    Attributes:
        fitness: One float64 fitness per solution, in order.
        episodes: Episodes completed (environments only).
        interactions: Environment steps taken (environments only).
        obs_delta: Observation statistics collected, as a packed RunningStat buffer, or None.
        seconds: Wall time the evaluating worker spent on these solutions (summed on merge).
    """

    fitness: np.ndarray
    episodes: int = 0
    interactions: int = 0
    obs_delta: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0

    @classmethod
    def merge(cls, parts: Sequence[EvalResult]) -> EvalResult:
        """Concatenate the fitnesses of ``parts`` in order and add up their side effects."""
        deltas = [p.obs_delta for p in parts if p.obs_delta is not None]
        return cls(
            fitness=np.concatenate([p.fitness for p in parts]) if parts else np.empty(0),
            episodes=sum(p.episodes for p in parts),
            interactions=sum(p.interactions for p in parts),
            obs_delta=np.sum(deltas, axis=0) if deltas else None,
            seconds=sum(p.seconds for p in parts),
        )


def annotate_solution(err: BaseException, index: int) -> None:
    """Record on an exception which solution was being evaluated (the innermost annotation wins)."""
    if getattr(err, "hpcne_solution_index", None) is None:
        err.hpcne_solution_index = index  # type: ignore[attr-defined]


class Solution:
    """One row of a :class:`SolutionBatch`: a view of its values and evaluation."""

    def __init__(self, batch: SolutionBatch, index: int) -> None:
        self._batch = batch
        self._index = index

    @property
    def values(self) -> torch.Tensor:
        """The decision values (a view into the batch)."""
        return self._batch._row(self._index)

    @property
    def evals(self) -> torch.Tensor:
        """The evaluation as a tensor of shape ``(1,)``."""
        return self._batch.evals[self._index]

    @property
    def evaluation(self) -> float:
        """The fitness as a float (NaN when not evaluated)."""
        return float(self._batch.evals[self._index, 0])

    @property
    def is_evaluated(self) -> bool:
        """Whether the solution has a fitness."""
        return not math.isnan(self.evaluation)

    def set_evaluation(self, value: float | torch.Tensor) -> None:
        """Set the fitness."""
        self._batch.evals[self._index, 0] = float(value)

    def set_values(self, values: Any) -> None:
        """Overwrite the decision values and forget the fitness."""
        row = self._batch.access_values(keep_evals=True)[self._index]  # a generated batch refuses here
        row.copy_(torch.as_tensor(values, dtype=row.dtype))
        self._batch.evals[self._index, 0] = math.nan

    def __repr__(self) -> str:
        return f"Solution(values={self.values}, evaluation={self.evaluation})"


class SolutionBatch:
    """A population: a ``(popsize, solution_length)`` tensor of values and ``(popsize, 1)`` evals."""

    def __init__(
        self,
        problem: Problem,
        popsize: int | None = None,
        *,
        values: torch.Tensor | np.ndarray | None = None,
        evals: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Create a batch of ``popsize`` solutions drawn from the problem, or wrap ``values``.

        Args:
            problem: The problem the solutions belong to.
            popsize: How many solutions to generate (when ``values`` is not given).
            values: Existing values, shape ``(n, solution_length)``.
            evals: Existing evaluations, shape ``(n,)`` or ``(n, 1)``.
        """
        self._problem = problem
        if values is None:
            if popsize is None:
                raise ValueError("SolutionBatch needs either popsize or values; got neither.")
            values = problem.generate_values(popsize)
        self._values = torch.as_tensor(values, dtype=problem.dtype, device=problem.device)
        if self._values.ndim != 2 or self._values.shape[1] != problem.solution_length:
            raise ValueError(
                f"Solution values must have shape (n, {problem.solution_length}); got {tuple(self._values.shape)}."
            )
        n = self._values.shape[0]
        self._evals = torch.full((n, 1), math.nan, dtype=problem.eval_dtype)
        if evals is not None:
            self.set_evals(evals)

    @property
    def problem(self) -> Problem:
        """The problem these solutions belong to."""
        return self._problem

    @property
    def values(self) -> torch.Tensor:
        """The decision values, shape ``(popsize, solution_length)``."""
        return self._values

    @property
    def evals(self) -> torch.Tensor:
        """The evaluations, shape ``(popsize, 1)``; NaN where not evaluated."""
        return self._evals

    def _row(self, index: int) -> torch.Tensor:
        """The values of one solution (a view where the batch stores its values)."""
        return self._values[index]

    @property
    def solution_length(self) -> int:
        """The number of decision values of each solution."""
        return self._values.shape[1]

    @property
    def is_evaluated(self) -> bool:
        """Whether every solution has a fitness."""
        return not bool(torch.isnan(self._evals).any())

    def access_values(self, *, keep_evals: bool = False) -> torch.Tensor:
        """Return the values for in-place modification; this forgets the evaluations unless kept."""
        if not keep_evals:
            self._evals.fill_(math.nan)
        return self._values

    def access_evals(self) -> torch.Tensor:
        """Return the evaluations for in-place modification."""
        return self._evals

    def set_values(self, values: torch.Tensor | np.ndarray) -> None:
        """Overwrite all values (same shape) and forget the evaluations."""
        self._values.copy_(torch.as_tensor(values, dtype=self._values.dtype))
        self._evals.fill_(math.nan)

    def set_evals(self, evals: torch.Tensor | np.ndarray | Sequence[float]) -> None:
        """Set the evaluations from ``n`` values (shape ``(n,)`` or ``(n, 1)``)."""
        evals = torch.as_tensor(as_numpy(evals, np.float64)).to(self._evals.dtype)
        self._evals.copy_(evals.reshape(self._evals.shape))

    def argbest(self) -> int:
        """Index of the best solution according to the objective sense."""
        return int(self._problem.argbest(self._evals[:, 0]))

    def argworst(self) -> int:
        """Index of the worst solution according to the objective sense."""
        return int(self._problem.argworst(self._evals[:, 0]))

    def take(self, indices: Sequence[int] | torch.Tensor) -> SolutionBatch:
        """Return a new batch holding copies of the chosen rows."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return SolutionBatch(self._problem, values=self._values[idx].clone(), evals=self._evals[idx].clone())

    @classmethod
    def cat(cls, batches: Sequence[SolutionBatch]) -> SolutionBatch:
        """Concatenate batches of the same problem into a new batch."""
        if not batches:
            raise ValueError("SolutionBatch.cat needs at least one batch.")
        return cls(
            batches[0].problem,
            values=torch.cat([b.values for b in batches]),
            evals=torch.cat([b.evals for b in batches]),
        )

    def __len__(self) -> int:
        return self._values.shape[0]

    def __getitem__(self, index: int) -> Solution:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"Solution index {index} is out of range for a batch of {n}.")
        return Solution(self, index % n)

    def __iter__(self) -> Iterator[Solution]:
        return (Solution(self, i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"SolutionBatch(popsize={len(self)}, solution_length={self.solution_length})"
