"""Counter-based Gaussian populations and exact, layout-independent sums over their noise.

Solution ``i`` of evaluation round ``r`` is ``center + stdev * z_i`` where ``z_i`` comes from its
own stream keyed by ``(seed, r, i)`` (mirrored pairs ``2j, 2j+1`` share the stream of pair ``j``
as ``+z, -z``). Any process can therefore generate any solution from its index, and no process
needs the whole population.

The separable searchers (PGPE, SNES, CEM) update from two weighted sums over the noise,
``A = sum_i w_i z_i`` and ``B = sum_i w_i z_i**2``. Each solution's (or pair's) term is rounded
to a 64-bit fixed-point integer at a scale chosen from the weights alone, and the integers are
added modulo 2**64. Integer addition is associative, so the sums have the same bits however the
population is split among processes and in whatever order the pieces are combined (an
``MPI_Allreduce`` of floats has no such guarantee). The rounding step is at most
``2**-46 * sum|w|`` per term of ``A`` and ``2**-42 * sum|w|`` of ``B`` (:func:`scales`): far
below the float32 resolution of the update.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hpcne.seeding import generator_for
from hpcne.solution import SolutionBatch

if TYPE_CHECKING:
    from hpcne.problem import Problem

__all__ = [
    "NOISE_BOUND",
    "STREAM_NOISE",
    "GaussianSample",
    "NoiseStream",
    "SampledBatch",
    "from_fixed",
    "noise_sums",
    "scales",
]

STREAM_NOISE = 3  # after STREAM_PROBLEM, STREAM_EVALUATION and STREAM_SEARCHER (hpcne.problem)
NOISE_BOUND = 16.0
"""Noise is clipped to ``[-16, 16]``; numpy's float32 ziggurat never leaves about ``[-8.3, 8.3]``,
so the clip only guarantees the bound the fixed-point scales rely on."""

# x + 1.5 * 2**52 rounds x (|x| < 2**51) to an integer held in the low bits of the float64: adding
# those bits as uint64 accumulates round(x) without a separate float->int conversion pass.
_MAGIC = 1.5 * 2.0**52
_MAGIC_BITS = int(np.float64(_MAGIC).view(np.uint64))
_FIXED_BITS = 50  # |term| < 2**50 after scaling, so the sum of the terms' magnitudes stays < 2**51
_CHUNK_BYTES = 32 * 2**20  # how much noise is materialised at a time


def _unit_noise(seed: int, eval_round: int, unit: int, length: int) -> np.ndarray:
    """The float32 standard-normal vector of one solution (or mirrored pair), clipped to the bound."""
    z = generator_for(seed, STREAM_NOISE, eval_round, unit).standard_normal(length, dtype=np.float32)
    return np.clip(z, -NOISE_BOUND, NOISE_BOUND, out=z)


@dataclass(frozen=True)
class NoiseStream:
    """The standard-normal noise of one evaluation round's population.

    Attributes:
        seed: The run seed.
        eval_round: The problem's evaluation round that the population is evaluated as.
        length: The number of decision values.
        symmetric: Rows ``2j, 2j+1`` are ``+z_j`` and ``-z_j`` (one unit of noise per pair).
    """

    seed: int
    eval_round: int
    length: int
    symmetric: bool

    def units(self, num_solutions: int) -> int:
        """How many independent noise vectors ``num_solutions`` rows hold (pairs count once)."""
        return num_solutions // 2 if self.symmetric else num_solutions

    def unit(self, unit: int) -> np.ndarray:
        """The float32 noise of solution (or mirrored pair) ``unit``."""
        return _unit_noise(self.seed, self.eval_round, unit, self.length)

    def signed_units(self, start: int, stop: int) -> Iterator[tuple[np.ndarray, bool]]:
        """For rows ``start..stop-1``: each row's unit noise and whether the row takes it negated."""
        cached: tuple[int, np.ndarray] | None = None  # a pair's noise serves both of its rows
        for i in range(start, stop):
            unit = i // 2 if self.symmetric else i
            if cached is None or cached[0] != unit:
                cached = unit, self.unit(unit)
            yield cached[1], self.symmetric and i % 2 == 1

    def noise(self, start: int, stop: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The rows ``start..stop-1``, shape ``(stop - start, length)``."""
        out = np.empty((stop - start, self.length), dtype)
        for row, (z, negated) in zip(out, self.signed_units(start, stop)):
            (np.negative if negated else np.positive)(z, out=row, casting="same_kind")
        return out


@dataclass(frozen=True)
class GaussianSample:
    """A population given by its noise and its distribution: row ``i`` is ``center + stdev * z_i``.

    Attributes:
        stream: The noise.
        center: The centre, shape ``(d,)``, in the searcher's dtype.
        stdev: The per-dimension stdev, same dtype and shape.
    """

    stream: NoiseStream
    center: np.ndarray
    stdev: np.ndarray

    def chunk_rows(self) -> int:
        """How many rows to generate at a time to stay within a few tens of MB."""
        return max(1, _CHUNK_BYTES // (self.stream.length * self.center.itemsize))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Solutions ``start..stop-1``: ``center + stdev * z`` (``center - stdev * z`` for a pair's second row)."""
        out = np.empty((stop - start, self.stream.length), self.center.dtype)
        for row, (z, negated) in zip(out, self.stream.signed_units(start, stop)):
            np.multiply(z, self.stdev, out=row, casting="same_kind")
            (np.subtract if negated else np.add)(self.center, row, out=row)
        return out


def scales(weights: np.ndarray, *, symmetric: bool) -> tuple[int, int]:
    """The fixed-point exponents of ``A = sum w z`` and ``B = sum w z**2`` for these weights.

    Each is the largest power of two at which every term, and so any partial sum of terms, stays
    below ``2**50`` in magnitude, given ``|z| <= NOISE_BOUND``. Every process computes the same
    exponents from the same weights.
    """
    per_unit = _unit_weights(np.asarray(weights, np.float64), symmetric)
    exponents = []
    for unit_weights, power in zip(per_unit, (1, 2)):
        bound = float(np.abs(unit_weights).sum()) * NOISE_BOUND**power
        exponents.append(_FIXED_BITS if bound == 0 else _FIXED_BITS - math.ceil(math.log2(bound)))
    return exponents[0], exponents[1]


def _unit_weights(weights: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit weights of ``z`` and ``z**2``: a mirrored pair contributes ``(w+ - w-) z`` and ``(w+ + w-) z**2``."""
    if not symmetric:
        return weights, weights
    return weights[0::2] - weights[1::2], weights[0::2] + weights[1::2]


def noise_sums(
    stream: NoiseStream, weights: np.ndarray, exponents: tuple[int, int], start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point ``sum w_i z_i`` and ``sum w_i z_i**2`` over the units ``start..stop-1`` of ``sample``.

    A unit is a solution, or a mirrored pair when ``stream.symmetric`` (so a split never cuts a
    pair). Units with zero weights are skipped (their terms are exactly zero).

    Args:
        stream: The population's noise.
        weights: One weight per solution of the whole population.
        exponents: From :func:`scales` on the weights of the whole generation.
        start: First unit.
        stop: One past the last unit.

    Returns:
        Two uint64 vectors of length ``d``, to be added (modulo 2**64) to the other pieces' and
        turned into floats by :func:`from_fixed`.
    """
    weight_a, weight_b = _unit_weights(np.asarray(weights, np.float64), stream.symmetric)
    sum_a = np.zeros(stream.length, np.uint64)
    sum_b = np.zeros(stream.length, np.uint64)
    term = np.empty(stream.length)
    counted = 0
    factor_a, factor_b = 2.0 ** exponents[0], 2.0 ** exponents[1]
    for unit in range(start, stop):
        if weight_a[unit] == 0 and weight_b[unit] == 0:
            continue
        z = stream.unit(unit)
        np.multiply(z, np.float64(weight_a[unit] * factor_a), out=term)
        term += _MAGIC
        sum_a += term.view(np.uint64)
        np.multiply(z, z, out=term, dtype=np.float64)
        term *= weight_b[unit] * factor_b
        term += _MAGIC
        sum_b += term.view(np.uint64)
        counted += 1
    offset = np.uint64((counted * _MAGIC_BITS) % 2**64)
    sum_a -= offset
    sum_b -= offset
    return sum_a, sum_b


def from_fixed(total: np.ndarray, exponent: int) -> np.ndarray:
    """The float64 value of a fixed-point sum (uint64 bits of a two's-complement int64)."""
    return np.ldexp(total.view(np.int64).astype(np.float64), -exponent)


class SampledBatch(SolutionBatch):
    """An evaluated population whose rows are regenerated from their indices when asked for.

    The distributed mode keeps only the fitnesses of a generation on the coordinator; a row
    (e.g. the generation's best) is rebuilt from its :class:`GaussianSample` on demand, with the
    same bits as the row that was evaluated. The values cannot be modified.
    """

    def __init__(self, problem: Problem, samples: Sequence[tuple[GaussianSample, int]], evals: np.ndarray) -> None:
        """Wrap the samples of a generation (each with its number of rows) and their fitnesses."""
        self._problem = problem
        self._parts = list(samples)
        self._starts = np.cumsum([0] + [size for _, size in self._parts])
        self._evals = torch.full((int(self._starts[-1]), 1), math.nan, dtype=problem.eval_dtype)
        self.set_evals(evals)

    def _rows(self, index: int, count: int = 1) -> torch.Tensor:
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        sample, first = self._parts[part][0], index - int(self._starts[part])
        rows = torch.from_numpy(sample.rows(first, first + count))
        return rows.to(self._problem.dtype, copy=False).to(self._problem.device)

    def _row(self, index: int) -> torch.Tensor:
        return self._rows(index)[0]

    @property
    def values(self) -> torch.Tensor:
        """All rows, generated now (``popsize x solution_length``: costly for large populations)."""
        return torch.cat([self._rows(int(start), size) for start, (_, size) in zip(self._starts, self._parts)])

    @property
    def solution_length(self) -> int:
        """The number of decision values of each solution."""
        return self._problem.solution_length

    def access_values(self, *, keep_evals: bool = False) -> torch.Tensor:
        """Refused: the rows are defined by the sample and cannot be modified."""
        raise TypeError(
            "This population was generated from noise indices (distributed mode) and its values cannot be "
            "modified; copy the rows you need with take(indices)."
        )

    set_values = access_values  # type: ignore[assignment]

    def take(self, indices: Sequence[int] | torch.Tensor) -> SolutionBatch:
        """A new (ordinary) batch holding copies of the chosen rows."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        rows = torch.stack([self._row(int(i)) for i in idx]) if len(idx) else torch.empty(0, self.solution_length)
        return SolutionBatch(self._problem, values=rows, evals=self._evals[idx].clone())

    def __len__(self) -> int:
        return len(self._evals)

    @property
    def values_shape(self) -> torch.Size:
        """The shape :attr:`values` would have, ``(popsize, solution_length)``, without generating it."""
        return torch.Size((len(self), self.solution_length))

    @property
    def values_dtype(self) -> torch.dtype:
        """The dtype of the decision values."""
        return self._problem.dtype

    def clone(self) -> SolutionBatch:
        """An ordinary batch holding copies of every row (generated now)."""
        return self.take(list(range(len(self))))

    def __getitem__(self, index: Any) -> Any:
        """As for any batch, except that a slice is a copy: there is no stored population to view."""
        if isinstance(index, slice):
            return self.take(list(range(*index.indices(len(self)))))
        return super().__getitem__(index)

    @classmethod
    def join(cls, batches: Sequence[SampledBatch]) -> SampledBatch:
        """One population from the batches of a generation, in order."""
        parts = [part for batch in batches for part in batch._parts]
        return cls(batches[0].problem, parts, torch.cat([batch.evals for batch in batches]).numpy())
