"""MAP-Elites: the best solution found in each cell of a grid over features (Mouret & Clune, arXiv:1504.04909)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from hpcne.algorithms.ga import GeneticAlgorithm
from hpcne.core import Problem, SolutionBatch
from hpcne.operators import OperatorLike
from hpcne.tools.dtypes import to_torch_dtype

__all__ = ["MAPElites"]


class MAPElites(GeneticAlgorithm):
    """MAP-Elites, as EvoTorch's ``MAPElites``: one population slot per cell of ``feature_grid``.

    The problem's extra evaluation data (``eval_data_length`` >= 1 columns) are the features.
    ``feature_grid[i, j]`` is the ``(lower, upper)`` interval of feature ``j`` in cell ``i``
    (see :meth:`make_feature_grid`). Each step makes children with ``operators`` as the GA's
    operator form does; then every cell takes the best of parents and children whose features
    lie in it. :attr:`filled` tells which cells hold such a solution; the other slots keep an
    arbitrary solution (the best overall) so that the operators always have a full population.
    """

    name: ClassVar[str] = "mapelites"
    _state_attrs: ClassVar[tuple[str, ...]] = ("filled",)

    def __init__(
        self,
        problem: Problem,
        *,
        operators: Iterable[OperatorLike],
        feature_grid: Any,
        re_evaluate: bool = True,
        re_evaluate_parents_first: bool | None = None,
    ) -> None:
        """Create MAP-Elites.

        Args:
            problem: A problem with ``eval_data_length`` >= 1 (the features).
            operators: The variation operators (see :class:`GeneticAlgorithm`).
            feature_grid: A ``(cells, eval_data_length, 2)`` tensor of feature intervals.
            re_evaluate: Evaluate the parents again every step.
            re_evaluate_parents_first: Evaluate the parents before the operators run.
        """
        grid = torch.as_tensor(feature_grid, dtype=problem.eval_dtype)
        features = problem.eval_data_length
        if features < 1 or grid.ndim != 3 or grid.shape[1:] != (features, 2):
            raise ValueError(
                f"MAPElites needs eval_data_length >= 1 (the features; the problem has {features}) and a "
                f"feature_grid of shape (cells, {features}, 2); got {tuple(grid.shape)}. "
                "MAPElites.make_feature_grid builds one."
            )
        super().__init__(
            problem,
            popsize=len(grid),
            operators=operators,
            elitist=True,
            re_evaluate=re_evaluate,
            re_evaluate_parents_first=re_evaluate_parents_first,
        )
        self.feature_grid = grid
        self.filled = torch.zeros(len(grid), dtype=torch.bool)

    def _select(self, parents: SolutionBatch, children: SolutionBatch) -> SolutionBatch:
        """Per cell, the best solution whose features lie inside it."""
        extended = SolutionBatch.cat([parents, children])
        features = extended.evals[:, 1:]
        lower, upper = self.feature_grid[:, None, :, 0], self.feature_grid[:, None, :, 1]
        inside = ((features >= lower) & (features <= upper)).all(dim=-1)  # (cells, candidates)
        sign = 1.0 if self._higher_is_better else -1.0
        scores = torch.where(inside, sign * extended.evals[:, 0], -torch.inf)
        self.filled = inside.any(dim=1)
        return extended.take(torch.argmax(scores, dim=1))

    @staticmethod
    def make_feature_grid(
        lower_bounds: Any,
        upper_bounds: Any,
        num_bins: int | Any,
        *,
        device: torch.device | str | None = None,
        dtype: Any = None,
    ) -> torch.Tensor:
        """A grid of ``num_bins`` cells per feature: ``(-inf, lb)``, equal steps from ``lb`` to ``ub``, ``(ub, inf)``.

        Returns:
            A ``(prod(num_bins), features, 2)`` tensor for ``feature_grid``.
        """
        options = {"device": device, "dtype": None if dtype is None else to_torch_dtype(dtype)}
        lower, upper = torch.as_tensor(lower_bounds, **options), torch.as_tensor(upper_bounds, **options)
        if lower.ndim != 1 or lower.shape != upper.shape:
            raise ValueError(
                f"lower_bounds and upper_bounds must be 1-D of one length; got {lower.shape}, {upper.shape}."
            )
        bins = torch.as_tensor(num_bins, dtype=torch.int64).expand(lower.shape)
        if bool((bins < 2).any()):
            raise ValueError(f"num_bins must be at least 2 per feature; got {num_bins!r}.")
        per_feature = []
        for lo, hi, n in zip(lower, upper, bins):
            edges = torch.linspace(float(lo), float(hi), int(n) - 1, dtype=lower.dtype, device=lower.device)
            inf = torch.tensor([torch.inf], dtype=lower.dtype, device=lower.device)
            edges = torch.cat([-inf, edges, inf])
            per_feature.append(torch.stack([edges[:-1], edges[1:]], dim=1))
        return torch.stack([torch.stack(cell) for cell in itertools.product(*per_feature)])
