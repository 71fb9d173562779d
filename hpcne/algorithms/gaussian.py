"""Shared machinery of the Gaussian searchers (PGPE, SNES, XNES, CEM): sampling, ranking, updates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from hpcne.algorithms.base import SearchAlgorithm, check_int, check_obj_index, check_positive
from hpcne.algorithms.optimizers import CenterOptimizer, make_optimizer
from hpcne.algorithms.ranking import check_ranking_method, rank
from hpcne.core import Problem, Solution, SolutionBatch
from hpcne.sampling import (
    GaussianSample,
    NoiseStream,
    SampledBatch,
    check_noise_table,
    from_fixed,
    generation_sums,
    noise_table_size,
    scales,
)

__all__ = [
    "GaussianSearchAlgorithm",
    "as_vector",
    "default_popsize",
    "initial_center",
    "initial_stdev",
    "learning_rate",
    "limit_stdev",
    "stdev_from_radius",
]


def default_popsize(solution_length: int) -> int:
    """Return the NES/CMA-ES default population size ``4 + floor(3 ln n)``."""
    return 4 + math.floor(3 * math.log(solution_length))


def learning_rate(name: str, given: float | None, default: float, *, scale: bool) -> float:
    """Return ``default`` when ``given`` is None, else ``given`` (times ``default`` when ``scale``)."""
    if given is None:
        return default
    rate = check_positive(name, given)
    return rate * default if scale else rate


def as_vector(name: str, value: Any, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Return ``value`` (a scalar or a sequence of ``length`` numbers) as a 1-D tensor of ``length``.

    Raises:
        ValueError: If ``value`` has another shape.
    """
    tensor = torch.as_tensor(value, dtype=dtype)
    if tensor.ndim == 0:
        return tensor.expand(length).clone()
    if tensor.shape != (length,):
        raise ValueError(
            f"{name} must be a scalar or have one value per decision variable ({length}); "
            f"got shape {tuple(tensor.shape)}."
        )
    return tensor.clone()


def initial_center(problem: Problem, center_init: Any, dtype: torch.dtype) -> torch.Tensor:
    """Return the starting centre: ``center_init`` (values, a scalar or a Solution), else a random point.

    The random point is ``problem.generate_values(1)[0]``, drawn within the initial bounds.
    """
    if center_init is None:
        return problem.generate_values(1)[0].to(dtype)
    if isinstance(center_init, Solution):
        center_init = center_init.values
    return as_vector("center_init", center_init, problem.solution_length, dtype)


def stdev_from_radius(radius: float, solution_length: int) -> float:
    """Return the per-dimension stdev whose vector has norm ``radius``: ``sqrt(radius**2 / n)``."""
    return math.sqrt(check_positive("radius_init", radius) ** 2 / solution_length)


def initial_stdev(stdev_init: Any, radius_init: float | None, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Return the starting stdev vector from exactly one of ``stdev_init`` and ``radius_init``.

    Raises:
        ValueError: If both or neither are given, or a stdev is not positive.
    """
    if (stdev_init is None) == (radius_init is None):
        raise ValueError(
            "Exactly one of stdev_init and radius_init must be given; got "
            f"stdev_init={stdev_init!r} and radius_init={radius_init!r}. "
            "Give stdev_init for per-dimension stdevs, or radius_init for the norm of the stdev vector."
        )
    if radius_init is not None:
        stdev_init = stdev_from_radius(radius_init, length)
    stdev = as_vector("stdev_init", stdev_init, length, dtype)
    if not bool((stdev > 0).all()):
        raise ValueError(f"stdev_init must be positive everywhere; got {stdev_init!r}.")
    return stdev


def limit_stdev(
    old: torch.Tensor,
    new: torch.Tensor,
    *,
    max_change: torch.Tensor | None = None,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
) -> torch.Tensor:
    """Limit an updated stdev to ``old * (1 +- max_change)``, then clamp it to ``[lower, upper]``.

    Args:
        old: The stdev before the update.
        new: The proposed stdev.
        max_change: The largest relative change allowed, or None.
        lower: The smallest stdev allowed, or None.
        upper: The largest stdev allowed, or None.

    Returns:
        The limited stdev.
    """
    if max_change is not None:
        new = torch.clamp(new, old * (1 - max_change), old * (1 + max_change))
    if lower is not None or upper is not None:
        new = torch.clamp(new, lower, upper)
    return new


def _on_device(state: Any, device: torch.device) -> Any:
    """A nested state (dicts of tensors and numbers) with its tensors on ``device``."""
    if isinstance(state, Mapping):
        return {key: _on_device(value, device) for key, value in state.items()}
    return state.to(device) if isinstance(state, torch.Tensor) else state


class GaussianSearchAlgorithm(SearchAlgorithm):
    """Base of the searchers that sample ``center + stdev * z`` and update the distribution from ``z``.

    A step samples (and, with ``num_interactions``, keeps sampling) populations and evaluates them.
    PGPE, SNES and CEM (``_updates_from_sums``) draw solution ``i`` of round ``r`` from the stream
    keyed by ``(seed, r, i)`` and update from exact sums over the noise (:mod:`hpcne.sampling`), in
    one process or, with ``distributed=True``, wherever the solutions are evaluated. XNES draws the
    population from the searcher's generator and hands its noise to :meth:`_update`; its ``stdev``
    is a matrix ``A`` (``x = center + A z``).
    """

    _state_attrs: ClassVar[tuple[str, ...]] = ("center", "stdev", "optimizer")
    internal_dtype: ClassVar[torch.dtype | None] = None
    _updates_from_sums: ClassVar[bool] = False
    """The update needs only ``sum w z`` and ``sum w z**2`` (a diagonal stdev): such a searcher samples
    from the shared noise table of :mod:`hpcne.sampling` and can run distributed."""

    def __init__(
        self,
        problem: Problem,
        *,
        popsize: int,
        stdev_init: Any = None,
        radius_init: float | None = None,
        center_init: Any = None,
        center_learning_rate: float | None = None,
        optimizer: str | type[CenterOptimizer] | CenterOptimizer | None = None,
        optimizer_config: dict[str, Any] | None = None,
        ranking_method: str | None = None,
        num_interactions: int | None = None,
        popsize_max: int | None = None,
        stdev_min: Any = None,
        stdev_max: Any = None,
        stdev_max_change: Any = None,
        symmetric: bool = False,
        obj_index: int | None = None,
        distributed: bool = False,
    ) -> None:
        """Create the searcher (subclasses document the arguments they expose).

        Args:
            problem: The problem to solve.
            popsize: Solutions sampled per batch (even when ``symmetric``).
            stdev_init: Initial stdev, a scalar or one per dimension.
            radius_init: Initial norm of the stdev vector (instead of ``stdev_init``).
            center_init: Initial centre; a random point in the initial bounds when None.
            center_learning_rate: Step size of the centre update (the optimizer's, if any).
            optimizer: Optimizer following the centre gradient, or None for plain steps.
            optimizer_config: Extra keyword arguments for the optimizer.
            ranking_method: Fitness shaping, see :func:`hpcne.algorithms.ranking.rank`.
            num_interactions: Keep sampling batches of ``popsize`` until the generation's
                environment interactions exceed this (problems counting interactions only).
            popsize_max: Stop adding batches once the population reaches this size.
            stdev_min: Lower limit of the stdev (scalar or vector).
            stdev_max: Upper limit of the stdev (scalar or vector).
            stdev_max_change: Largest relative stdev change per step (scalar or vector).
            symmetric: Sample mirrored pairs ``center +- z`` (interleaved +, -).
            obj_index: None or 0 (EvoTorch compatibility; problems have a single objective).
            distributed: Generate, evaluate and reduce each solution where it is evaluated, so that
                only fitnesses and ``O(d)`` sums travel (searchers with a diagonal stdev only). The
                trajectory is the same as the centralized one's, bit for bit.

        Raises:
            ValueError: ``distributed=True`` for a searcher whose update needs the whole population.
        """
        super().__init__(problem, center=self._get_center, stdev=self._get_stdev)
        d = problem.solution_length
        self._dtype = self.internal_dtype or problem.dtype
        self.popsize = check_int("popsize", popsize, minimum=1)
        self.symmetric = bool(symmetric)
        if self.symmetric and self.popsize % 2:
            raise ValueError(
                f"popsize must be even for symmetric sampling (solutions come in +/- pairs); got {popsize}. "
                "Use an even popsize or symmetric=False."
            )
        self.num_interactions = (
            None if num_interactions is None else check_int("num_interactions", num_interactions, minimum=1)
        )
        if self.num_interactions is not None and "total_interaction_count" not in problem.status:
            raise ValueError(
                "num_interactions needs a problem that counts environment interactions "
                f"(status key 'total_interaction_count', e.g. GymNE); {type(problem).__name__} does not. "
                "Leave num_interactions as None."
            )
        self.popsize_max = None if popsize_max is None else check_int("popsize_max", popsize_max, minimum=self.popsize)
        self.ranking_method = check_ranking_method(ranking_method)
        check_obj_index(obj_index)
        if distributed and not self._updates_from_sums:
            raise ValueError(
                f"{type(self).__name__} cannot run distributed: its update needs every solution's full noise "
                "vector (a full covariance or shape matrix), so the population must be on one process. "
                "Leave distributed=False, or use PGPE, SNES or CEM, whose updates need only sums over the noise."
            )
        self.distributed = bool(distributed)
        if self.distributed:  # this process's copy, which the MPI runtime of a worker rank updates
            problem._replica = self
        self.center = initial_center(problem, center_init, self._dtype)
        self.stdev = initial_stdev(stdev_init, radius_init, d, self._dtype)
        self.stdev_min, self.stdev_max, self.stdev_max_change = (
            None if value is None else as_vector(name, value, d, self._dtype)
            for name, value in (
                ("stdev_min", stdev_min),
                ("stdev_max", stdev_max),
                ("stdev_max_change", stdev_max_change),
            )
        )
        self.center_learning_rate = (
            None if center_learning_rate is None else check_positive("center_learning_rate", center_learning_rate)
        )
        self.optimizer = (
            None
            if optimizer is None
            else make_optimizer(optimizer, d, self.center_learning_rate, optimizer_config, dtype=self._dtype)
        )

    @property
    def noise_table(self) -> int | None:
        """The size of the shared noise table the populations come from (None: drawn from the generator)."""
        return noise_table_size(self.problem.solution_length) if self._updates_from_sums else None

    def state_dict(self) -> dict[str, Any]:
        """The base class's state, and the noise table's size when the populations come from it."""
        state = super().state_dict()
        if self.noise_table is not None:
            state["noise_table"] = self.noise_table
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state; see :meth:`SearchAlgorithm.load_state_dict`.

        Raises:
            ValueError: Also when the state was sampled from a noise table of another size
                (``HPCNE_NOISE_TABLE``), which would continue it as another run.
        """
        if self.noise_table is not None and "noise_table" in state:  # states saved before it was recorded: no
            check_noise_table(int(state["noise_table"]), self.problem.solution_length)
        super().load_state_dict(state)

    # ------------------------------------------------------------ subclasses
    def _update(self, noise: torch.Tensor) -> None:
        """Update the distribution from the evaluated population and its standard-normal ``noise``."""
        raise NotImplementedError

    def _weights(self) -> torch.Tensor:
        """Per-solution weights ``w`` of the update's noise sums (searchers with ``_updates_from_sums``)."""
        raise NotImplementedError

    def _update_from_sums(self, noise_sum: torch.Tensor, squares_sum: torch.Tensor, weight_sum: float) -> None:
        """Update the distribution from ``sum_i w_i z_i``, ``sum_i w_i z_i**2`` and ``sum_i w_i``."""
        raise NotImplementedError

    def _values_from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Map standard-normal rows to solutions (``center + stdev * z`` for a stdev vector)."""
        return self.center + self.stdev * noise

    # --------------------------------------------------------------- helpers
    def _step(self) -> None:
        """Sample and evaluate a population, then update the distribution from it."""
        keys = self._sample_and_evaluate()
        if not self._updates_from_sums:
            self._update(torch.cat(keys))
            return
        weights = self._weights().detach().cpu().numpy().astype(np.float64)
        exponents = scales(weights, symmetric=self.symmetric)
        streams = [sample.stream for sample in keys]  # adaptive popsize: one per batch of popsize
        if self.distributed:  # every process sums its share, and updates its own copy with the same bits
            self.problem.runtime.update_distribution(self, streams, weights, exponents)
        else:
            self.apply_noise_sums(generation_sums(streams, weights, exponents), exponents, float(weights.sum()))

    # ----------------------------------------------- the replica (distributed)
    def replica_state(self) -> dict[str, Any]:
        """The centre, stdev and optimizer state (on the CPU): what the samples and the update read or write."""
        return _on_device(self._search_state(), torch.device("cpu"))

    def load_replica_state(self, state: Mapping[str, Any]) -> None:
        """Adopt another process's :meth:`replica_state` (onto this copy's device, which may be another GPU)."""
        self._load_search_state(_on_device(state, self.center.device))

    def replica_sample(self, stream: NoiseStream) -> GaussianSample:
        """The population of ``stream`` around the current centre and stdev."""
        return GaussianSample(stream, self.center.detach().cpu().numpy(), self.stdev.detach().cpu().numpy())

    def apply_noise_sums(
        self, sums: tuple[np.ndarray, np.ndarray], exponents: tuple[int, int], weight_sum: float
    ) -> None:
        """Update the distribution from the generation's fixed-point noise sums (every process alike)."""
        noise_sum, squares_sum = (
            torch.from_numpy(from_fixed(total, exponent)).to(self._dtype).to(self.center.device)
            for total, exponent in zip(sums, exponents)
        )
        self._update_from_sums(noise_sum, squares_sum, weight_sum)

    def _sample_and_evaluate(self) -> list[Any]:
        """Sample and evaluate the population (more batches with ``num_interactions``).

        Returns:
            Per batch: its standard-normal noise (a tensor), or its :class:`GaussianSample` for the
            searchers that update from noise sums.
        """
        counted = self.num_interactions is not None
        interactions_before = self.problem.status["total_interaction_count"] if counted else 0
        keys, batches = [], []
        while True:
            batch, key = self._sample_batch() if self._updates_from_sums else self._draw_batch()
            keys.append(key)
            batches.append(batch)
            if not counted:
                break
            if self.popsize_max is not None and self.popsize * len(batches) >= self.popsize_max:
                break
            if self.problem.status["total_interaction_count"] - interactions_before > self.num_interactions:
                break
        if len(batches) == 1:
            self.population = batches[0]
        elif isinstance(batches[0], SampledBatch):
            self.population = SampledBatch.join(batches)
        else:
            self.population = SolutionBatch.cat(batches)
        return keys

    def _draw_batch(self) -> tuple[SolutionBatch, torch.Tensor]:
        """Draw ``popsize`` noise rows from the searcher's generator; evaluate them as one batch."""
        noise = self.problem.make_gaussian(
            self.popsize,
            self.problem.solution_length,
            dtype=self._dtype,
            device=self.center.device,
            symmetric=self.symmetric,
            generator=self._generator,
        )
        batch = SolutionBatch(self.problem, values=self._values_from_noise(noise))
        self.problem.evaluate(batch)
        return batch, noise

    def _sample_batch(self) -> tuple[SolutionBatch, GaussianSample]:
        """Evaluate ``popsize`` solutions of the next evaluation round, their noise read from the shared table.

        Distributed: every process generates and evaluates its own rows; only fitnesses come back.
        Centralized: the rows are generated here and sent out. The rows have the same bits.
        """
        p = self.problem
        sample = self.replica_sample(NoiseStream(p.seed, p._eval_round, p.solution_length, self.symmetric))
        if self.distributed:
            fitness = p.evaluate_sampled(sample, self.popsize, replica=self)
            return SampledBatch(p, [(sample, self.popsize)], fitness), sample
        batch = SolutionBatch(p, values=torch.from_numpy(sample.rows(0, self.popsize)))
        p.evaluate(batch)
        return batch, sample

    def _utilities(self) -> torch.Tensor:
        """Ranked utilities of the population (higher is better), in the internal dtype."""
        evals = self.population.evals[:, 0]
        return rank(evals, self.ranking_method, higher_is_better=self._higher_is_better).to(self._dtype)

    def _nes_utilities(self) -> torch.Tensor:
        """Utilities for NES updates: ``"nes"`` ranks as they are, others divided by their absolute sum."""
        utilities = self._utilities()
        return utilities if self.ranking_method == "nes" else utilities / utilities.abs().sum()

    def _move_center(self, gradient: torch.Tensor) -> None:
        """Ascend ``gradient``: through the optimizer if any, else by ``center_learning_rate``."""
        step = self.center_learning_rate * gradient if self.optimizer is None else self.optimizer.ascent(gradient)
        self.center = self.center + step

    def _limited(self, new_stdev: torch.Tensor) -> torch.Tensor:
        """Apply ``stdev_max_change``, ``stdev_min`` and ``stdev_max`` to a proposed stdev."""
        return limit_stdev(
            self.stdev,
            new_stdev,
            max_change=self.stdev_max_change,
            lower=self.stdev_min,
            upper=self.stdev_max,
        )

    def _get_center(self) -> torch.Tensor:
        return self._report(self.center)

    def _get_stdev(self) -> torch.Tensor:
        return self._report(self.stdev)
