"""CMA-ES, the (mu/mu_w, lambda) covariance matrix adaptation ES (Hansen, arXiv:1604.00772, 2016)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from hpcne.algorithms.base import SearchAlgorithm, check_int, check_obj_index, check_positive
from hpcne.algorithms.gaussian import default_popsize, initial_center
from hpcne.algorithms.ranking import best_first
from hpcne.core import Problem, SolutionBatch

__all__ = ["CMAES"]


def _scaled(value: float | None, default: float, ratio: float) -> float:
    """Return ``ratio`` times ``value``, or times ``default`` when ``value`` is None."""
    return float(ratio) * (default if value is None else float(value))


class CMAES(SearchAlgorithm):
    """CMA-ES with weighted recombination, cumulative step-size adaptation and active covariance updates.

    The constants follow Hansen's tutorial (2016), with pycma's ``c_1 = min(1, lambda/6) *
    2 / ((d + 1.3)^2 + mu_eff)`` and pycma's separable rates when ``separable=True`` (a diagonal
    covariance). The state (``center``, ``sigma``, ``C``, its eigenbasis ``B`` and root eigenvalues
    ``D``, the paths ``p_sigma`` and ``p_c``) is kept in float64; the population in the problem's dtype.
    Status entries: ``center``, ``stdev`` (``sigma * sqrt(diag C)``) and ``stepsize`` (``sigma``).
    """

    name: ClassVar[str] = "cmaes"
    _state_attrs: ClassVar[tuple[str, ...]] = ("center", "sigma", "C", "B", "D", "p_sigma", "p_c")

    def __init__(
        self,
        problem: Problem,
        *,
        stdev_init: float,
        popsize: int | None = None,
        center_init: Any = None,
        c_m: float = 1.0,
        c_sigma: float | None = None,
        c_sigma_ratio: float = 1.0,
        damp_sigma: float | None = None,
        damp_sigma_ratio: float = 1.0,
        c_c: float | None = None,
        c_c_ratio: float = 1.0,
        c_1: float | None = None,
        c_1_ratio: float = 1.0,
        c_mu: float | None = None,
        c_mu_ratio: float = 1.0,
        active: bool = True,
        csa_squared: bool = False,
        stdev_min: float | None = None,
        stdev_max: float | None = None,
        separable: bool = False,
        limit_C_decomposition: bool = True,
        obj_index: int | None = None,
    ) -> None:
        """Create CMA-ES.

        Args:
            problem: The problem to solve.
            stdev_init: Initial step size ``sigma`` (positive).
            popsize: Solutions per generation (>= 2); ``4 + floor(3 ln d)`` when None.
            center_init: Initial mean (values or a Solution); a random point in the initial bounds when None.
            c_m: Learning rate of the mean.
            c_sigma: Learning rate of the step-size path; ``(mu_eff + 2) / (d + mu_eff + 3)`` when None.
            c_sigma_ratio: Multiplier of ``c_sigma``.
            damp_sigma: Step-size damping; ``1 + 2 max(0, sqrt((mu_eff - 1) / (d + 1)) - 1) + c_sigma``
                when None.
            damp_sigma_ratio: Multiplier of ``damp_sigma``.
            c_c: Learning rate of the covariance path.
            c_c_ratio: Multiplier of ``c_c``.
            c_1: Rank-one learning rate.
            c_1_ratio: Multiplier of ``c_1``.
            c_mu: Rank-mu learning rate.
            c_mu_ratio: Multiplier of ``c_mu``.
            active: Whether the worse half of the population gets negative weights (active CMA).
            csa_squared: Adapt the step size from the squared path length
                (``sigma *= exp(c_sigma / damp_sigma * (|p_sigma|^2 / d - 1) / 2)``).
            stdev_min: Lower limit of every ``sigma * sqrt(C_ii)``.
            stdev_max: Upper limit of every ``sigma * sqrt(C_ii)``.
            separable: Adapt a diagonal covariance only (O(d) per sample).
            limit_C_decomposition: Re-decompose ``C`` only every
                ``max(1, floor(1 / (10 d (c_1 + c_mu))))`` generations (Hansen's lazy update).
            obj_index: None or 0.
        """
        d = problem.solution_length
        super().__init__(problem, center=self._get_center, stdev=self._get_stdev, stepsize=self._get_stepsize)
        check_obj_index(obj_index)
        self.popsize = default_popsize(d) if popsize is None else check_int("popsize", popsize, minimum=2)
        self.mu = self.popsize // 2
        self.separable = bool(separable)
        self.active = bool(active)
        self.csa_squared = bool(csa_squared)
        self.c_m = check_positive("c_m", c_m)
        self.stdev_min = stdev_min
        self.stdev_max = stdev_max

        raw = math.log((self.popsize + 1) / 2) - torch.log(torch.arange(1, self.popsize + 1, dtype=torch.float64))
        positive, negative = raw[: self.mu], raw[self.mu :]
        self.mu_eff = float(positive.sum() ** 2 / (positive**2).sum())
        mu_eff = self.mu_eff
        self.c_sigma = _scaled(c_sigma, (mu_eff + 2) / (d + mu_eff + 3), c_sigma_ratio)
        self.damp_sigma = _scaled(
            damp_sigma,
            1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (d + 1)) - 1) + self.c_sigma,
            damp_sigma_ratio,
        )
        if self.separable:
            default_c_c = (1 + 1 / d + mu_eff / d) / (math.sqrt(d) + 1 / d + 2 * mu_eff / d)
            default_c_1 = 1 / (d + 2 * math.sqrt(d) + mu_eff / d)
            default_c_mu = (0.25 + mu_eff + 1 / mu_eff - 2) / (d + 4 * math.sqrt(d) + mu_eff / 2)
        else:
            default_c_c = (4 + mu_eff / d) / (d + 4 + 2 * mu_eff / d)
            default_c_1 = min(1.0, self.popsize / 6) * 2 / ((d + 1.3) ** 2 + mu_eff)
            default_c_mu = 2 * (0.25 + mu_eff - 2 + 1 / mu_eff) / ((d + 2) ** 2 + mu_eff)
        self.c_c = _scaled(c_c, default_c_c, c_c_ratio)
        self.c_1 = _scaled(c_1, default_c_1, c_1_ratio)
        self.c_mu = _scaled(c_mu, min(1 - self.c_1, default_c_mu), c_mu_ratio)

        if self.active:
            mu_eff_negative = float(negative.sum() ** 2 / (negative**2).sum())
            alpha = min(
                1 + self.c_1 / self.c_mu,
                1 + 2 * mu_eff_negative / (mu_eff + 2),
                (1 - self.c_1 - self.c_mu) / (d * self.c_mu),
            )
            negative = alpha * negative / negative.abs().sum()
        else:
            negative = torch.zeros_like(negative)
        self.weights = torch.cat([positive / positive.sum(), negative])
        self.chi_n = math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d**2))
        self.decompose_every = max(1, math.floor(1 / (10 * d * (self.c_1 + self.c_mu)))) if limit_C_decomposition else 1

        self.center = initial_center(problem, center_init, torch.float64)
        self.sigma = check_positive("stdev_init", stdev_init)
        self.p_sigma = torch.zeros(d, dtype=torch.float64)
        self.p_c = torch.zeros(d, dtype=torch.float64)
        if self.separable:
            self.C = torch.ones(d, dtype=torch.float64)
            self.B = None
        else:
            self.C = torch.eye(d, dtype=torch.float64)
            self.B = torch.eye(d, dtype=torch.float64)
        self.D = torch.ones(d, dtype=torch.float64)

    def _step(self) -> None:
        """Sample and evaluate, then update the mean, the paths, the covariance and the step size."""
        d = self.problem.solution_length
        z = torch.randn(self.popsize, d, generator=self._generator, dtype=torch.float64)
        y = z * self.D if self.separable else (z * self.D) @ self.B.T  # y ~ N(0, C)
        self.population = SolutionBatch(self.problem, values=self.center + self.sigma * y)
        self.problem.evaluate(self.population)
        order = best_first(self.population.evals[:, 0], higher_is_better=self._higher_is_better)
        z, y = z[order], y[order]
        h_sigma = self._update_mean_and_paths(z, y)
        self._update_covariance(z, y, h_sigma)
        path_norm = float(torch.linalg.vector_norm(self.p_sigma))
        log_change = (path_norm**2 / d - 1) / 2 if self.csa_squared else path_norm / self.chi_n - 1
        self.sigma = self.sigma * math.exp(self.c_sigma / self.damp_sigma * log_change)
        if self.stdev_min is not None or self.stdev_max is not None:
            limited = torch.clamp(self.sigma * self._variances.sqrt(), self.stdev_min, self.stdev_max)
            self._variances.copy_((limited / self.sigma) ** 2)
        if self.separable or (self.step_count + 1) % self.decompose_every == 0:
            self._decompose()

    def _update_mean_and_paths(self, z: torch.Tensor, y: torch.Tensor) -> float:
        """Move the mean and update both evolution paths from the sorted samples; return ``h_sigma``."""
        d = self.problem.solution_length
        top = self.weights[: self.mu]
        y_w = top @ y[: self.mu]
        z_w = top @ z[: self.mu]
        self.center = self.center + self.c_m * self.sigma * y_w
        whitened = z_w if self.separable else self.B @ z_w  # C^(-1/2) y_w
        self.p_sigma = (1 - self.c_sigma) * self.p_sigma + math.sqrt(
            self.c_sigma * (2 - self.c_sigma) * self.mu_eff
        ) * whitened
        path_norm = float(torch.linalg.vector_norm(self.p_sigma))
        unbiased = path_norm / math.sqrt(1 - (1 - self.c_sigma) ** (2 * (self.step_count + 1)))
        h_sigma = float(unbiased < (1.4 + 2 / (d + 1)) * self.chi_n)
        self.p_c = (1 - self.c_c) * self.p_c + h_sigma * math.sqrt(self.c_c * (2 - self.c_c) * self.mu_eff) * y_w
        return h_sigma

    def _update_covariance(self, z: torch.Tensor, y: torch.Tensor, h_sigma: float) -> None:
        """Apply the rank-one and (active) rank-mu updates to ``C`` from the sorted samples."""
        d = self.problem.solution_length
        # Negative weights are rescaled by d / |C^(-1/2) y_i|^2 = d / |z_i|^2.
        weights = torch.where(self.weights >= 0, self.weights, self.weights * d / (z**2).sum(dim=1))
        lost_variance = (1 - h_sigma) * self.c_c * (2 - self.c_c)
        decay = 1 + self.c_1 * lost_variance - self.c_1 - self.c_mu * float(self.weights.sum())
        if self.separable:
            rank_one, rank_mu = self.p_c**2, weights @ y**2
        else:
            rank_one, rank_mu = torch.outer(self.p_c, self.p_c), (y.T * weights) @ y
        self.C = decay * self.C + self.c_1 * rank_one + self.c_mu * rank_mu

    @property
    def _variances(self) -> torch.Tensor:
        """The diagonal of ``C`` (a view)."""
        return self.C if self.separable else torch.diagonal(self.C)

    def _decompose(self) -> None:
        """Refresh ``B`` and ``D`` (``C = B diag(D^2) B^T``) from ``C``."""
        if self.separable:
            self.D = self.C.sqrt()
            return
        self.C = (self.C + self.C.T) / 2
        eigenvalues, self.B = torch.linalg.eigh(self.C)
        self.D = eigenvalues.clamp(min=torch.finfo(torch.float64).tiny).sqrt()

    def _get_center(self) -> torch.Tensor:
        return self._report(self.center)

    def _get_stdev(self) -> torch.Tensor:
        return self._report(self.sigma * self._variances.sqrt())

    def _get_stepsize(self) -> float:
        return self.sigma
