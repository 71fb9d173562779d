"""PGPE (Sehnke et al., Neural Networks 23(4), 2010) with ClipUp (Toklu et al., PPSN 2020) by default."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hpcne.algorithms.base import check_positive
from hpcne.algorithms.gaussian import GaussianSearchAlgorithm
from hpcne.algorithms.optimizers import CenterOptimizer
from hpcne.core import Problem

__all__ = ["PGPE", "pgpe_gradients"]


def pgpe_gradients(
    scaled_noise: torch.Tensor, utilities: torch.Tensor, stdev: torch.Tensor, *, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return PGPE's gradients of the expected utility with respect to the centre and the stdev.

    Symmetric (rows ``center + s_0, center - s_0, center + s_1, ...``), with ``u+ = u[0::2]``,
    ``u- = u[1::2]`` and ``s`` the ``+`` rows' noise: ``grad_center = ((u+ - u-) / 2) @ s / m`` and
    ``grad_stdev = ((u+ + u-) / 2) @ ((s**2 - stdev**2) / stdev) / m`` over ``m`` directions.
    Otherwise ``grad_center = u @ s / n`` and ``grad_stdev = u @ ((s**2 - stdev**2) / stdev) / n``.

    Args:
        scaled_noise: ``solution - center`` for every solution, shape ``(n, d)``.
        utilities: Ranked utilities, shape ``(n,)``.
        stdev: The stdev the noise was drawn with, shape ``(d,)``.
        symmetric: Whether the rows are mirrored pairs.

    Returns:
        ``(grad_center, grad_stdev)``.
    """
    if symmetric:
        scaled_noise = scaled_noise[0::2]
        center_weights = (utilities[0::2] - utilities[1::2]) / 2
        stdev_weights = (utilities[0::2] + utilities[1::2]) / 2
    else:
        center_weights = stdev_weights = utilities
    count = len(scaled_noise)
    grad_center = center_weights @ scaled_noise / count
    grad_stdev = stdev_weights @ ((scaled_noise**2 - stdev**2) / stdev) / count
    return grad_center, grad_stdev


class PGPE(GaussianSearchAlgorithm):
    """Policy gradients with parameter-based exploration on a separable Gaussian.

    Each step samples ``popsize`` solutions (mirrored pairs by default), ranks them (0-centred by
    default), moves the centre with the optimizer (ClipUp by default) and the stdev by
    ``stdev_learning_rate`` times its gradient, limited to ``x(1 +- stdev_max_change)`` and to
    ``[stdev_min, stdev_max]``.
    """

    name: ClassVar[str] = "pgpe"
    _updates_from_sums: ClassVar[bool] = True

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        center_learning_rate: float,
        stdev_learning_rate: float,
        stdev_init: Any = None,
        radius_init: float | None = None,
        num_interactions: int | None = None,
        popsize_max: int | None = None,
        optimizer: str | type[CenterOptimizer] | CenterOptimizer | None = "clipup",
        optimizer_config: dict[str, Any] | None = None,
        ranking_method: str | None = "centered",
        center_init: Any = None,
        stdev_min: Any = None,
        stdev_max: Any = None,
        stdev_max_change: Any = 0.2,
        symmetric: bool = True,
        obj_index: int | None = None,
        distributed: bool = False,
    ) -> None:
        """Create PGPE.

        Args:
            problem: The problem to solve.
            popsize: Solutions per generation (even when ``symmetric``).
            center_learning_rate: Step size of the centre (ClipUp's max speed defaults to twice it).
            stdev_learning_rate: Step size of the stdev.
            stdev_init: Initial stdev, a scalar or one per dimension.
            radius_init: Initial norm of the stdev vector, instead of ``stdev_init``.
            num_interactions: Extend each generation by further batches of ``popsize`` until it
                has taken more than this many environment steps (GymNE and similar problems).
            popsize_max: Upper limit of the extended population size.
            optimizer: ``"clipup"``, ``"adam"``, ``"sgd"``, an optimizer class or instance, or None.
            optimizer_config: Extra optimizer arguments, e.g. ``{"max_speed": 0.3}``.
            ranking_method: Fitness shaping (``"centered"``, ``"linear"``, ``"nes"``,
                ``"normalized"``, ``"raw"`` or None).
            center_init: Initial centre; a random point in the initial bounds when None.
            stdev_min: Lower limit of the stdev.
            stdev_max: Upper limit of the stdev.
            stdev_max_change: Largest relative stdev change per step (None for no limit).
            symmetric: Sample mirrored pairs.
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
            center_learning_rate=check_positive("center_learning_rate", center_learning_rate),
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
        self.stdev_learning_rate = check_positive("stdev_learning_rate", stdev_learning_rate)

    def _weights(self) -> torch.Tensor:
        utilities = self._utilities()
        if self.ranking_method not in ("centered", "normalized"):
            utilities = utilities - utilities.mean()
        return utilities / len(utilities)

    def _update_from_sums(self, noise_sum: torch.Tensor, squares_sum: torch.Tensor, weight_sum: float) -> None:
        # pgpe_gradients with s = stdev * z and u / n folded into the weights (pairs: (u+ -+ u-) / 2m).
        self._move_center(self.stdev * noise_sum)
        grad_stdev = self.stdev * (squares_sum - weight_sum)
        self.stdev = self._limited(self.stdev + self.stdev_learning_rate * grad_stdev)
