"""Solutions and solution batches: parameter rows with their evaluations, and evaluation results."""

from __future__ import annotations

import math
import numbers
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
        eval_data: The problem's extra evaluation data (``eval_data_length`` columns per
            solution), or None. Only in-process evaluation returns it.
    """

    fitness: np.ndarray
    episodes: int = 0
    interactions: int = 0
    obs_delta: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0
    eval_data: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def merge(cls, parts: Sequence[EvalResult]) -> EvalResult:
        """Concatenate the fitnesses of ``parts`` in order and add up their side effects."""
        deltas = [p.obs_delta for p in parts if p.obs_delta is not None]
        all_eval_data = bool(parts) and all(p.eval_data is not None for p in parts)
        return cls(
            fitness=np.concatenate([p.fitness for p in parts]) if parts else np.empty(0),
            episodes=sum(p.episodes for p in parts),
            interactions=sum(p.interactions for p in parts),
            obs_delta=np.sum(deltas, axis=0) if deltas else None,
            seconds=sum(p.seconds for p in parts),
            eval_data=np.concatenate([p.eval_data for p in parts]) if all_eval_data else None,
        )


def annotate_solution(err: BaseException, index: int) -> None:
    """Record on an exception which solution was being evaluated (the innermost annotation wins)."""
    if getattr(err, "hpcne_solution_index", None) is None:
        err.hpcne_solution_index = index  # type: ignore[attr-defined]


class Solution:
    """One row of a :class:`SolutionBatch`: a view of its values and evaluation (EvoTorch's ``Solution``).

    Changing a solution's values through :meth:`access_values` changes its batch and forgets
    its evaluation; :meth:`clone` (also ``copy.copy``) gives an independent solution.
    """

    def __init__(self, batch: SolutionBatch, index: int) -> None:
        self._batch = batch
        self._index = index

    @property
    def problem(self) -> Problem:
        """The problem this solution belongs to."""
        return self._batch.problem

    @property
    def values(self) -> torch.Tensor:
        """The decision values (a view into the batch; use :meth:`access_values` to modify them)."""
        return self._batch._row(self._index)

    @property
    def evals(self) -> torch.Tensor:
        """The evaluation row: the fitness, then any extra evaluation data."""
        return self._batch.evals[self._index]

    @property
    def evaluation(self) -> float:
        """The fitness as a float (NaN when not evaluated)."""
        return float(self._batch.evals[self._index, 0])

    @property
    def is_evaluated(self) -> bool:
        """Whether the solution has a fitness."""
        return not math.isnan(self.evaluation)

    @property
    def shape(self) -> torch.Size:
        """The shape of the decision values, ``(solution_length,)``."""
        return self.values.shape

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the decision values."""
        return self._batch.values_dtype

    def __len__(self) -> int:
        return self._batch.solution_length

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self.values.detach().cpu().numpy(), dtype=dtype)

    def access_values(self, *, keep_evals: bool = False) -> torch.Tensor:
        """The values for in-place modification; this forgets the evaluation unless ``keep_evals``."""
        row = self._batch.access_values(keep_evals=True)[self._index]  # a generated batch refuses here
        if not keep_evals:
            self._batch.evals[self._index].fill_(math.nan)
        return row

    def access_evals(self, obj_index: int | None = None) -> torch.Tensor:
        """The evaluation row for in-place modification, or its element ``obj_index``."""
        row = self._batch.evals[self._index]
        return row if obj_index is None else row[obj_index]

    def set_values(self, values: Any) -> None:
        """Overwrite the decision values and forget the evaluation."""
        self.access_values().copy_(torch.as_tensor(values, dtype=self.dtype))

    def set_evaluation(self, evaluation: float | torch.Tensor, eval_data: Any = None) -> None:
        """Set the fitness and, if given, the extra evaluation data."""
        self._batch.evals[self._index, 0] = float(evaluation)
        if eval_data is not None:
            self._batch.evals[self._index, 1:] = torch.as_tensor(eval_data, dtype=self._batch.evals.dtype)

    set_evals = set_evaluation

    def to_batch(self) -> SolutionBatch:
        """A new one-solution batch holding a copy of this solution."""
        return self._batch.take([self._index])

    def clone(self) -> Solution:
        """An independent copy (its own storage)."""
        return Solution(self.to_batch(), 0)

    def __copy__(self) -> Solution:
        return self.clone()

    def __deepcopy__(self, memo: dict[int, Any]) -> Solution:
        return self.clone()

    def __repr__(self) -> str:
        return f"Solution(values={self.values}, evals={self.evals})"


class SolutionBatch:
    """A population: ``(popsize, solution_length)`` values and ``(popsize, 1 + eval_data_length)`` evals.

    Column 0 of the evaluations is the fitness; the problem's ``eval_data_length`` extra columns
    hold evaluation data. As in EvoTorch, ``batch[a:b]`` is a view sharing storage with ``batch``,
    while ``batch[[i, j]]`` and :meth:`clone` (also ``copy.copy`` and ``copy.deepcopy``) copy.
    """

    def __init__(
        self,
        problem: Problem,
        popsize: int | None = None,
        *,
        values: torch.Tensor | np.ndarray | None = None,
        evals: torch.Tensor | np.ndarray | None = None,
        empty: bool = False,
    ) -> None:
        """Create a batch of ``popsize`` solutions drawn from the problem, or wrap ``values``.

        Args:
            problem: The problem the solutions belong to.
            popsize: How many solutions to make (when ``values`` is not given).
            values: Existing values, shape ``(n, solution_length)`` (not copied when already a
                tensor of the problem's dtype).
            evals: Existing evaluations, shape ``(n,)`` or ``(n, 1 + eval_data_length)``.
            empty: Leave the values uninitialised instead of drawing them from the problem.
        """
        self._problem = problem
        if values is None:
            if popsize is None:
                raise ValueError("SolutionBatch needs either popsize or values; got neither.")
            if empty:
                values = torch.empty(int(popsize), problem.solution_length, dtype=problem.dtype, device=problem.device)
            else:
                values = problem.generate_values(popsize)
        self._values = torch.as_tensor(values, dtype=problem.dtype, device=problem.device)
        if self._values.ndim != 2 or self._values.shape[1] != problem.solution_length:
            raise ValueError(
                f"Solution values must have shape (n, {problem.solution_length}); got {tuple(self._values.shape)}."
            )
        width = 1 + problem.eval_data_length
        self._evals = torch.full((self._values.shape[0], width), math.nan, dtype=problem.eval_dtype)
        if evals is not None:
            self.set_evals(evals)

    @classmethod
    def _view(cls, problem: Problem, values: torch.Tensor, evals: torch.Tensor) -> SolutionBatch:
        """A batch over existing tensors, without copying them."""
        batch = cls.__new__(cls)
        batch._problem, batch._values, batch._evals = problem, values, evals
        return batch

    # ------------------------------------------------------------------ data
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
        """The evaluations, shape ``(popsize, 1 + eval_data_length)``; NaN where not evaluated."""
        return self._evals

    def _row(self, index: int) -> torch.Tensor:
        """The values of one solution (a view where the batch stores its values)."""
        return self._values[index]

    @property
    def values_shape(self) -> torch.Size:
        """The shape of :attr:`values`."""
        return self._values.shape

    @property
    def eval_shape(self) -> torch.Size:
        """The shape of :attr:`evals`."""
        return self._evals.shape

    @property
    def values_dtype(self) -> torch.dtype:
        """The dtype of the decision values."""
        return self._values.dtype

    @property
    def eval_dtype(self) -> torch.dtype:
        """The dtype of the evaluations."""
        return self._evals.dtype

    @property
    def solution_length(self) -> int:
        """The number of decision values of each solution."""
        return self._values.shape[1]

    @property
    def is_evaluated(self) -> bool:
        """Whether every solution has a fitness."""
        return not bool(torch.isnan(self._evals[:, 0]).any())

    def access_values(self, *, keep_evals: bool = False) -> torch.Tensor:
        """Return the values for in-place modification; this forgets the evaluations unless kept."""
        if not keep_evals:
            self.forget_evals()
        return self._values

    def access_evals(self, obj_index: int | None = None) -> torch.Tensor:
        """Return the evaluations (or column ``obj_index`` of them) for in-place modification."""
        return self._evals if obj_index is None else self._evals[:, obj_index]

    def forget_evals(self) -> None:
        """Mark every solution as not evaluated."""
        self._evals.fill_(math.nan)

    def set_values(self, values: torch.Tensor | np.ndarray) -> None:
        """Overwrite all values (same shape) and forget the evaluations."""
        self.access_values().copy_(torch.as_tensor(values, dtype=self._values.dtype))

    def set_evals(self, evals: Any, eval_data: Any = None) -> None:
        """Set the fitnesses and, optionally, the extra evaluation data.

        Args:
            evals: ``n`` fitnesses (shape ``(n,)`` or ``(n, 1)``; other columns become NaN), or
                whole evaluation rows (shape ``(n, 1 + eval_data_length)``).
            eval_data: The extra evaluation data, shape ``(n, eval_data_length)``.

        Raises:
            ValueError: If a shape does not fit the batch.
        """
        n, width = self._evals.shape
        given = torch.as_tensor(as_numpy(evals, np.float64)).to(self._evals.dtype)
        if given.ndim == 1:
            given = given.reshape(-1, 1)
        if given.ndim != 2 or given.shape[0] != n or given.shape[1] not in (1, width):
            raise ValueError(
                f"set_evals expects fitnesses of shape ({n},) or ({n}, 1), or whole evaluation rows of shape "
                f"({n}, {width}) (1 fitness + {width - 1} eval data columns); got {tuple(given.shape)}."
            )
        self._evals.fill_(math.nan)
        self._evals[:, : given.shape[1]] = given
        if eval_data is not None:
            data = torch.as_tensor(as_numpy(eval_data, np.float64)).to(self._evals.dtype)
            if tuple(data.shape) != (n, width - 1):
                raise ValueError(f"eval_data must have shape ({n}, {width - 1}); got {tuple(data.shape)}.")
            self._evals[:, 1:] = data

    # --------------------------------------------------------------- ranking
    def argbest(self) -> int:
        """Index of the best solution according to the objective sense."""
        return int(self._problem.argbest(self._evals[:, 0]))

    def argworst(self) -> int:
        """Index of the worst solution according to the objective sense."""
        return int(self._problem.argworst(self._evals[:, 0]))

    def argsort(self) -> torch.Tensor:
        """Indices that order the solutions from best to worst."""
        from hpcne.algorithms.ranking import best_first  # the algorithms layer builds on this module

        return best_first(self._evals[:, 0], higher_is_better=self._problem.objective_sense == "max")

    def utility(self, obj_index: int | None = None, *, ranking_method: str | None = None) -> torch.Tensor:
        """Utilities of the solutions (higher is better whatever the sense); ``None`` ranks by raw fitness."""
        from hpcne.algorithms.ranking import rank

        if obj_index not in (None, 0):
            raise ValueError(f"obj_index must be None or 0; got {obj_index!r}. hpcne problems have one objective.")
        higher_is_better = self._problem.objective_sense == "max"
        if ranking_method is None:  # EvoTorch's raw utilities: NaN stays NaN (the searchers' rank() puts it last)
            return self._evals[:, 0] if higher_is_better else -self._evals[:, 0]
        return rank(self._evals[:, 0], ranking_method, higher_is_better=higher_is_better)

    def utils(self, *, ranking_method: str | None = None) -> torch.Tensor:
        """Utilities as a ``(popsize, 1)`` tensor, one column per objective."""
        return self.utility(ranking_method=ranking_method).reshape(-1, 1)

    # ------------------------------------------------------ copies and views
    def take(self, indices: Sequence[int] | torch.Tensor) -> SolutionBatch:
        """Return a new batch holding copies of the chosen rows."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return SolutionBatch._view(self._problem, self._values[idx].clone(), self._evals[idx].clone())

    def clone(self) -> SolutionBatch:
        """An independent copy (its own storage; the same problem)."""
        return SolutionBatch._view(self._problem, self._values.clone(), self._evals.clone())

    def __copy__(self) -> SolutionBatch:
        return self.clone()

    def __deepcopy__(self, memo: dict[int, Any]) -> SolutionBatch:
        return self.clone()

    @classmethod
    def cat(cls, batches: Sequence[SolutionBatch | Solution]) -> SolutionBatch:
        """Concatenate batches (and single solutions) of the same problem into a new batch."""
        if not batches:
            raise ValueError("SolutionBatch.cat needs at least one batch.")
        parts = [b.to_batch() if isinstance(b, Solution) else b for b in batches]
        problem = parts[0].problem
        return SolutionBatch._view(problem, torch.cat([b.values for b in parts]), torch.cat([b.evals for b in parts]))

    def __len__(self) -> int:
        return self._values.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> Any:
        """A :class:`Solution` for an int, a view for a slice, a copy for a list or tensor of indices."""
        if isinstance(index, slice):
            return self._view(self._problem, self._values[index], self._evals[index])
        if isinstance(index, (torch.Tensor, np.ndarray)) and index.ndim == 0:
            index = int(index)
        if not isinstance(index, numbers.Integral):
            return self.take(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"Solution index {index} is out of range for a batch of {n}.")
        return Solution(self, int(index) % n)

    def __iter__(self) -> Iterator[Solution]:
        return (Solution(self, i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"SolutionBatch(popsize={len(self)}, solution_length={self.solution_length})"
