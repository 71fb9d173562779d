"""XNES, exponential natural evolution strategies (Glasmachers et al., GECCO 2010)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from hpcne.algorithms.gaussian import GaussianSearchAlgorithm, default_popsize, learning_rate
from hpcne.algorithms.optimizers import CenterOptimizer
from hpcne.core import Problem

__all__ = ["XNES"]


class XNES(GaussianSearchAlgorithm):
    """XNES on a full-covariance Gaussian ``x = center + A z`` with ``A = sigma * B``, ``det B = 1``.

    With NES utilities ``u``: ``G_delta = u @ z``, ``G_M = sum_k u_k (z_k z_k^T - I)``,
    ``G_sigma = tr(G_M) / d`` and ``G_B = G_M - G_sigma I``; then ``center += lr_c * A G_delta``
    (or through the optimizer) and ``A <- A expm((lr_sigma G_sigma I + lr_B G_B) / 2)``, which is
    ``sigma <- sigma exp(lr_sigma G_sigma / 2)`` and ``B <- B expm(lr_B G_B / 2)`` at once. The
    state is kept in float64; ``status["stdev"]`` is the matrix ``A`` (as in EvoTorch).
    """

    name: ClassVar[str] = "xnes"
    internal_dtype: ClassVar[torch.dtype | None] = torch.float64

    def __init__(
        self,
        problem: Problem,
        *,
        stdev_init: Any = None,
        radius_init: float | None = None,
        popsize: int | None = None,
        center_learning_rate: float | None = None,
        stdev_learning_rate: float | None = None,
        b_learning_rate: float | None = None,
        scale_learning_rate: bool = True,
        num_interactions: int | None = None,
        popsize_max: int | None = None,
        optimizer: str | type[CenterOptimizer] | CenterOptimizer | None = None,
        optimizer_config: dict[str, Any] | None = None,
        ranking_method: str | None = "nes",
        center_init: Any = None,
        obj_index: int | None = None,
        distributed: bool = False,
    ) -> None:
        """Create XNES.

        Args:
            problem: The problem to solve.
            stdev_init: Initial stdev, a scalar or one per dimension (``A = diag(stdev_init)``).
            radius_init: Initial norm of the stdev vector, instead of ``stdev_init``.
            popsize: Solutions per generation; ``4 + floor(3 ln d)`` when None.
            center_learning_rate: Centre step size; 1.0 when None.
            stdev_learning_rate: Step size of the global scale ``sigma``;
                ``0.6 (3 + ln d) / (d sqrt(d))`` when None.
            b_learning_rate: Step size of the shape ``B``; the same default.
            scale_learning_rate: Whether given rates multiply the defaults (EvoTorch's convention).
            num_interactions: Extend each generation until it has taken more environment steps.
            popsize_max: Upper limit of the extended population size.
            optimizer: Optional optimizer for the centre.
            optimizer_config: Extra optimizer arguments.
            ranking_method: Fitness shaping; utilities of methods other than ``"nes"`` are divided
                by their absolute sum.
            center_init: Initial centre; a random point in the initial bounds when None.
            obj_index: None or 0.
            distributed: Refused (ValueError): the update of the shape matrix needs every noise vector.
        """
        d = problem.solution_length
        super().__init__(
            problem,
            popsize=default_popsize(d) if popsize is None else popsize,
            stdev_init=stdev_init,
            radius_init=radius_init,
            center_init=center_init,
            center_learning_rate=1.0 if center_learning_rate is None else center_learning_rate,
            optimizer=optimizer,
            optimizer_config=optimizer_config,
            ranking_method=ranking_method,
            num_interactions=num_interactions,
            popsize_max=popsize_max,
            obj_index=obj_index,
            distributed=distributed,
        )
        default_rate = 0.6 * (3 + math.log(d)) / (d * math.sqrt(d))
        self.stdev_learning_rate = learning_rate(
            "stdev_learning_rate", stdev_learning_rate, default_rate, scale=scale_learning_rate
        )
        self.b_learning_rate = learning_rate(
            "b_learning_rate", b_learning_rate, default_rate, scale=scale_learning_rate
        )
        self.stdev = torch.diag(self.stdev)

    def _values_from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        return self.center + noise @ self.stdev.T

    def _update(self, noise: torch.Tensor) -> None:
        utilities = self._nes_utilities()
        d = self.problem.solution_length
        eye = torch.eye(d, dtype=self._dtype)
        grad_m = noise.T @ (utilities[:, None] * noise) - utilities.sum() * eye
        grad_sigma = torch.trace(grad_m) / d
        grad_b = grad_m - grad_sigma * eye
        self._move_center(self.stdev @ (utilities @ noise))
        exponent = 0.5 * (self.stdev_learning_rate * grad_sigma * eye + self.b_learning_rate * grad_b)
        self.stdev = self.stdev @ torch.linalg.matrix_exp(exponent)
