"""The cross-entropy method (Rubinstein 1999) for continuous search, as in Duan et al. (ICML 2016)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from hpcne.algorithms.gaussian import GaussianSearchAlgorithm
from hpcne.algorithms.ranking import best_first
from hpcne.core import Problem

__all__ = ["CEM"]


class CEM(GaussianSearchAlgorithm):
    """CEM on a separable Gaussian: the elites' mean and stdev become the new centre and stdev.

    The elites are the best ``floor(popsize * parenthood_ratio)`` solutions (counted on ``popsize``
    even when ``num_interactions`` enlarges the population); the new stdev is their per-dimension
    sample stdev, limited by ``stdev_max_change`` and clamped to ``[stdev_min, stdev_max]``.
    """

    name: ClassVar[str] = "cem"
    _updates_from_sums: ClassVar[bool] = True

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        parenthood_ratio: float,
        stdev_init: Any = None,
        radius_init: float | None = None,
        num_interactions: int | None = None,
        popsize_max: int | None = None,
        center_init: Any = None,
        stdev_min: Any = None,
        stdev_max: Any = None,
        stdev_max_change: Any = None,
        obj_index: int | None = None,
        distributed: bool = False,
    ) -> None:
        """Create CEM.

        Args:
            problem: The problem to solve.
            popsize: Solutions per generation.
            parenthood_ratio: Fraction of ``popsize`` kept as elites, in ``(0, 1]``; at least two
                elites are needed to estimate a stdev.
            stdev_init: Initial stdev, a scalar or one per dimension.
            radius_init: Initial norm of the stdev vector, instead of ``stdev_init``.
            num_interactions: Extend each generation until it has taken more environment steps.
            popsize_max: Upper limit of the extended population size.
            center_init: Initial centre; a random point in the initial bounds when None.
            stdev_min: Lower limit of the stdev.
            stdev_max: Upper limit of the stdev.
            stdev_max_change: Largest relative stdev change per step (None for no limit).
            obj_index: None or 0.
            distributed: Generate and evaluate each solution on the process that evaluates it; only
                fitnesses and ``O(d)`` sums travel. Same trajectory as ``False``, bit for bit.
        """
        super().__init__(
            problem,
            popsize=popsize,
            stdev_init=stdev_init,
            radius_init=radius_init,
            center_init=center_init,
            num_interactions=num_interactions,
            popsize_max=popsize_max,
            stdev_min=stdev_min,
            stdev_max=stdev_max,
            stdev_max_change=stdev_max_change,
            obj_index=obj_index,
            distributed=distributed,
        )
        if not 0 < parenthood_ratio <= 1:
            raise ValueError(f"parenthood_ratio must be in (0, 1]; got {parenthood_ratio!r}.")
        self.num_parents = math.floor(self.popsize * parenthood_ratio)
        if self.num_parents < 2:
            raise ValueError(
                f"popsize * parenthood_ratio = {self.popsize} * {parenthood_ratio} leaves {self.num_parents} "
                "elite(s); at least 2 are needed to estimate a stdev. Raise popsize or parenthood_ratio."
            )

    def _weights(self) -> torch.Tensor:
        elites = best_first(self.population.evals[:, 0], higher_is_better=self._higher_is_better)[: self.num_parents]
        weights = torch.zeros(len(self.population), dtype=torch.float64)
        weights[elites] = 1 / self.num_parents
        return weights

    def _update_from_sums(self, noise_sum: torch.Tensor, squares_sum: torch.Tensor, weight_sum: float) -> None:
        # The elites' z have mean noise_sum and mean square squares_sum; x = center + stdev * z per dimension.
        k = self.num_parents
        variance = torch.clamp(squares_sum - noise_sum**2, min=0) * (k / (k - 1))
        self.center = self.center + self.stdev * noise_sum
        self.stdev = self._limited(self.stdev * torch.sqrt(variance))
