"""SNES, separable natural evolution strategies (Schaul, Glasmachers & Schmidhuber, GECCO 2011)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from hpcne.algorithms.gaussian import GaussianSearchAlgorithm, default_popsize, learning_rate
from hpcne.algorithms.optimizers import CenterOptimizer
from hpcne.core import Problem

__all__ = ["SNES"]


class SNES(GaussianSearchAlgorithm):
    """Separable NES: natural-gradient steps on the centre and exponential steps on the stdev.

    With NES utilities ``u`` and noise ``z``: ``center += lr_c * stdev * (u @ z)`` (or through the
    optimizer) and ``stdev *= exp(lr_s / 2 * u @ (z**2 - 1))``, then the optional stdev limits.
    """

    name: ClassVar[str] = "snes"
    _updates_from_sums: ClassVar[bool] = True

    def __init__(
        self,
        problem: Problem,
        *,
        stdev_init: Any = None,
        radius_init: float | None = None,
        popsize: int | None = None,
        center_learning_rate: float | None = None,
        stdev_learning_rate: float | None = None,
        scale_learning_rate: bool = True,
        num_interactions: int | None = None,
        popsize_max: int | None = None,
        optimizer: str | type[CenterOptimizer] | CenterOptimizer | None = None,
        optimizer_config: dict[str, Any] | None = None,
        ranking_method: str | None = "nes",
        center_init: Any = None,
        stdev_min: Any = None,
        stdev_max: Any = None,
        stdev_max_change: Any = None,
        symmetric: bool = False,
        obj_index: int | None = None,
        distributed: bool = False,
    ) -> None:
        """Create SNES.

        Args:
            problem: The problem to solve.
            stdev_init: Initial stdev, a scalar or one per dimension.
            radius_init: Initial norm of the stdev vector, instead of ``stdev_init``.
            popsize: Solutions per generation; ``4 + floor(3 ln n)`` when None.
            center_learning_rate: Centre step size; 1.0 when None.
            stdev_learning_rate: Stdev step size; ``0.2 (3 + ln n) / sqrt(n)`` when None.
            scale_learning_rate: Whether a given ``stdev_learning_rate`` multiplies that default
                (EvoTorch's convention) rather than replacing it.
            num_interactions: Extend each generation until it has taken more environment steps.
            popsize_max: Upper limit of the extended population size.
            optimizer: Optional optimizer for the centre (None: plain natural-gradient steps).
            optimizer_config: Extra optimizer arguments.
            ranking_method: Fitness shaping; utilities of other methods are divided by their
                absolute sum.
            center_init: Initial centre; a random point in the initial bounds when None.
            stdev_min: Lower limit of the stdev.
            stdev_max: Upper limit of the stdev.
            stdev_max_change: Largest relative stdev change per step.
            symmetric: Sample mirrored pairs (popsize must then be even).
            obj_index: None or 0.
            distributed: Generate and evaluate each solution on the process that evaluates it; only
                fitnesses and ``O(d)`` sums travel. Same trajectory as ``False``, bit for bit.
        """
        n = problem.solution_length
        super().__init__(
            problem,
            popsize=default_popsize(n) if popsize is None else popsize,
            stdev_init=stdev_init,
            radius_init=radius_init,
            center_init=center_init,
            center_learning_rate=1.0 if center_learning_rate is None else center_learning_rate,
            optimizer=optimizer,
            optimizer_config=optimizer_config,
            ranking_method=ranking_method,
            num_interactions=num_interactions,
            popsize_max=popsize_max,
            stdev_min=stdev_min,
            stdev_max=stdev_max,
            stdev_max_change=stdev_max_change,
            symmetric=symmetric,
            obj_index=obj_index,
            distributed=distributed,
        )
        self.stdev_learning_rate = learning_rate(
            "stdev_learning_rate",
            stdev_learning_rate,
            0.2 * (3 + math.log(n)) / math.sqrt(n),
            scale=scale_learning_rate,
        )

    def _weights(self) -> torch.Tensor:
        return self._nes_utilities()

    def _update_from_sums(self, noise_sum: torch.Tensor, squares_sum: torch.Tensor, weight_sum: float) -> None:
        # u @ z and u @ (z**2 - 1) = sum u z**2 - sum u.
        self._move_center(self.stdev * noise_sum)
        self.stdev = self._limited(self.stdev * torch.exp(0.5 * self.stdev_learning_rate * (squares_sum - weight_sum)))
