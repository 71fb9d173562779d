"""Gaussian populations read from a shared noise table, and exact, layout-independent sums over their noise.

Solution ``i`` of evaluation round ``r`` is ``center + stdev * z_i``, where ``z_i`` is the slice of
length ``d`` of a table of standard normals starting at an offset hashed from ``(seed, r, i)``
(mirrored pairs ``2j, 2j+1`` share the slice of pair ``j`` as ``+z, -z``; Salimans et al. 2017).
Every process builds the same table once, so any process generates any solution from its index
as a view, without drawing ``d`` normals, and no process needs the whole population.

The separable searchers (PGPE, SNES, CEM) update from two weighted sums over the noise,
``A = sum_i w_i z_i`` and ``B = sum_i w_i z_i**2``. The table's values are multiples of
``2**-16`` (and the table of squares holds ``z**2`` rounded to that grid), and the weights are
rounded to a fixed-point grid chosen from the weights alone (:func:`scales`), so every term and
every partial sum is an integer multiple of one quantum below ``2**53``: float64 adds them
exactly, in any order. The sums therefore have the same bits however the population is split
among processes (pieces travel as 64-bit integers; an ``MPI_Allreduce`` of floats has no such
guarantee). A weight is rounded by at most ``2**-32 * sum|w|`` (``2**-28 * sum|w|`` in ``B``):
far below the float32 resolution of the update.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from hpcne.seeding import derive_seed, generator_for
from hpcne.solution import SolutionBatch

if TYPE_CHECKING:
    from hpcne.problem import Problem

__all__ = [
    "NOISE_BOUND",
    "NOISE_TABLE_ENV",
    "STREAM_NOISE",
    "GaussianSample",
    "NoiseStream",
    "Replica",
    "SampledBatch",
    "check_noise_table",
    "from_fixed",
    "generation_sums",
    "noise_sums",
    "noise_table_size",
    "scales",
    "state_checksum",
]

STREAM_NOISE = 3  # after STREAM_PROBLEM, STREAM_EVALUATION and STREAM_SEARCHER (hpcne.problem)
NOISE_BOUND = 16.0
"""Noise is clipped to ``[-16, 16]``; numpy's float32 ziggurat never leaves about ``[-8.3, 8.3]``,
so the clip only guarantees the bound the fixed-point scales rely on."""

NOISE_TABLE_ENV = "HPCNE_NOISE_TABLE"
"""Environment variable: the number of values in the noise table (the same on every process)."""

_QUANTUM_BITS = 16  # table values are multiples of 2**-16 (and so are the rounded squares)
_BLOCK = 2**20  # the table is made of blocks of this many values, each from its own stream
_TABLE_SEED = 0x5A17  # one table for every run: runs differ by their offsets, and a process builds it once
_MIN_TABLE = 2**20
_TABLE_PER_DIM = 16
_EXACT_BITS = 53  # float64 integers up to 2**53 are exact
_CHUNK_BYTES = 32 * 2**20  # how much of a population is materialised at a time
_SUM_BLOCK = 2**18  # float64 values of a sum kept in the cache while the slices add into it (2 MB)
_GATHER_VALUES = 2**16  # up to this many table values, a sum's slices are gathered and added in one product


def noise_table_size(length: int) -> int:
    """The number of values in the noise table for solutions of ``length`` decision values.

    ``HPCNE_NOISE_TABLE`` when set, else ``max(2**20, 16 * length)``: 16 distinct offsets per
    decision value keep slices of different solutions from sharing most of their values. The
    table and its squares take 8 bytes per value in every process (128 MB at ``d = 10**6``).

    Raises:
        ValueError: If ``HPCNE_NOISE_TABLE`` is not an integer at least ``2 * length``.
    """
    text = os.environ.get(NOISE_TABLE_ENV, "").strip()
    if not text:
        return max(_MIN_TABLE, _TABLE_PER_DIM * length)
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size < 2 * length:
        raise ValueError(
            f"{NOISE_TABLE_ENV}={text!r} must be a number of noise values of at least twice the solution length "
            f"({2 * length}); unset it for the default max(2**20, 16 * length) = "
            f"{max(_MIN_TABLE, _TABLE_PER_DIM * length)}."
        )
    return size


def check_noise_table(saved: int, length: int) -> None:
    """Refuse to continue a run sampled from a noise table of another size than this process's.

    The table's size decides every solution's noise (the offsets are taken modulo it), so the
    same seed gives another run with another size.

    Raises:
        ValueError: If ``saved`` differs from :func:`noise_table_size` here; the message names both
            sizes and the setting that gives the saved one.
    """
    current = noise_table_size(length)
    if saved == current:
        return
    default = max(_MIN_TABLE, _TABLE_PER_DIM * length)
    setting = f"unset {NOISE_TABLE_ENV} (the default)" if saved == default else f"export {NOISE_TABLE_ENV}={saved}"
    raise ValueError(
        f"The saved run sampled its populations from a noise table of {saved:,} values, but this process "
        f"has {current:,} ({NOISE_TABLE_ENV}={os.environ.get(NOISE_TABLE_ENV, '')!r}); another table gives "
        f"another run. To continue it, {setting} on every process; or start a new run."
    )


@lru_cache(maxsize=1)  # one table per process (the last size asked for)
def _noise_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The read-only float32 table of ``size`` standard normals on the 2**-16 grid, and their rounded squares."""
    table = np.empty(size, np.float32)
    for block, start in enumerate(range(0, size, _BLOCK)):
        part = table[start : start + _BLOCK]
        part[:] = generator_for(_TABLE_SEED, STREAM_NOISE, block).standard_normal(len(part), dtype=np.float32)
    np.clip(table, -NOISE_BOUND, NOISE_BOUND, out=table)
    table *= 2.0**_QUANTUM_BITS  # exact scaling by powers of two around the rounding
    np.rint(table, out=table)
    table *= 2.0**-_QUANTUM_BITS
    # z**2 < 256 on the 2**-16 grid needs 24 significant bits: exact in float32
    squares = np.square(table, dtype=np.float64)
    squares *= 2.0**_QUANTUM_BITS
    np.rint(squares, out=squares)
    squares *= 2.0**-_QUANTUM_BITS
    squares = squares.astype(np.float32)
    table.setflags(write=False)
    squares.setflags(write=False)
    return table, squares


@lru_cache(maxsize=1)
def _noise_tensors(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_noise_table` as tensors sharing its memory (only ever read through them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        table, squares = _noise_table(size)
        return torch.from_numpy(table), torch.from_numpy(squares)


@lru_cache(maxsize=2**14)  # a generation asks for each unit's offset several times (rows, then two sums)
def _table_offset(seed: int, eval_round: int, unit: int, starts: int) -> int:
    return derive_seed(seed, STREAM_NOISE, eval_round, unit) % starts


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

    def _offset(self, unit: int, table_size: int) -> int:
        return _table_offset(self.seed, self.eval_round, unit, table_size - self.length + 1)

    def unit(self, unit: int) -> np.ndarray:
        """The float32 noise of solution (or mirrored pair) ``unit``: a read-only view of the table."""
        table, _ = _noise_table(noise_table_size(self.length))
        start = self._offset(unit, len(table))
        return table[start : start + self.length]

    def unit_squares(self, unit: int) -> np.ndarray:
        """``unit(unit) ** 2`` rounded to the 2**-16 grid (what the sums of squares use): a read-only view."""
        _, squares = _noise_table(noise_table_size(self.length))
        start = self._offset(unit, len(squares))
        return squares[start : start + self.length]

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

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Solutions ``start..stop-1``: ``center + stdev * z`` (``center - stdev * z`` for a pair's second row).

        Args:
            start: First row.
            stop: One past the last row.
            out: Where to write them (the first ``stop - start`` rows of it), or None for a new array.
                A reused buffer spares the kernel zeroing fresh pages for every chunk, which at
                ``d = 10**6`` costs several times the arithmetic.
        """
        if out is None:
            out = np.empty((stop - start, self.stream.length), self.center.dtype)
        out = out[: stop - start]
        for row, (z, _) in zip(out, self.stream.signed_units(start, stop)):
            np.multiply(z, self.stdev, out=row, casting="same_kind")
        if not self.stream.symmetric:
            np.add(self.center, out, out=out)
            return out
        first = start % 2  # the first row that takes its pair's noise as it is (an even row)
        np.add(self.center, out[first::2], out=out[first::2])
        np.subtract(self.center, out[1 - first :: 2], out=out[1 - first :: 2])
        return out


def scales(weights: np.ndarray, *, symmetric: bool) -> tuple[int, int]:
    """The fixed-point exponents of ``A = sum w z`` and ``B = sum w z**2`` for these weights.

    Each is the largest power of two ``2**e`` at which every partial sum of the terms is an
    integer below ``2**53`` in magnitude (so float64 adds them exactly), given the table's grid
    and ``|z| <= NOISE_BOUND``. Every process computes the same exponents from the same weights;
    a sum's integer value is its float value times ``2**e``.
    """
    per_unit = _unit_weights(np.asarray(weights, np.float64), symmetric)
    exponents = []
    for unit_weights, power in zip(per_unit, (1, 2)):
        # one bit of margin for rounding the weights up; the grid takes _QUANTUM_BITS of the 53
        room = _EXACT_BITS - 1 - _QUANTUM_BITS - power * math.ceil(math.log2(NOISE_BOUND))
        total = float(np.abs(unit_weights).sum())
        exponents.append(room + _QUANTUM_BITS - (0 if total == 0 else math.ceil(math.log2(total))))
    return exponents[0], exponents[1]


def _unit_weights(weights: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit weights of ``z`` and ``z**2``: a mirrored pair contributes ``(w+ - w-) z`` and ``(w+ + w-) z**2``."""
    if not symmetric:
        return weights, weights
    return weights[0::2] - weights[1::2], weights[0::2] + weights[1::2]


def noise_sums(
    stream: NoiseStream, weights: np.ndarray, exponents: tuple[int, int], start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point ``sum w_i z_i`` and ``sum w_i z_i**2`` over the units ``start..stop-1`` of ``stream``.

    A unit is a solution, or a mirrored pair when ``stream.symmetric`` (so a split never cuts a
    pair). Units whose rounded weights are zero are skipped (their terms are exactly zero).

    Args:
        stream: The population's noise.
        weights: One weight per solution of the whole population.
        exponents: From :func:`scales` on the weights of the whole generation.
        start: First unit.
        stop: One past the last unit.

    Returns:
        Two uint64 vectors of length ``d`` (two's-complement integers), to be added (modulo
        2**64) to the other pieces' and turned into floats by :func:`from_fixed`.
    """
    table_size = noise_table_size(stream.length)
    sums = []
    for unit_weights, exponent, table in zip(
        _unit_weights(np.asarray(weights, np.float64), stream.symmetric), exponents, _noise_tensors(table_size)
    ):
        # weights on the grid 2**-(e - 16): times a table value (grid 2**-16), every term and
        # partial sum is an integer multiple of 2**-e below 2**53 * 2**-e, so float64 sums exactly
        weight_exponent = exponent - _QUANTUM_BITS
        rounded = np.ldexp(np.rint(np.ldexp(unit_weights, weight_exponent)), -weight_exponent)
        terms = [(stream._offset(u, table_size), float(rounded[u])) for u in range(start, stop) if rounded[u]]
        total = np.ldexp(_weighted_slices(table, terms, stream.length), exponent)
        sums.append(total.astype(np.int64).view(np.uint64))
    return sums[0], sums[1]


def _weighted_slices(table: torch.Tensor, terms: list[tuple[int, float]], length: int) -> np.ndarray:
    """``sum_k weight_k * table[offset_k : offset_k + length]`` in float64, for ``(offset_k, weight_k)`` in ``terms``.

    Column block by column block, so that the float64 total of a block stays in the cache while
    every slice adds into it: each slice is read once (4 bytes a value) and nothing else travels.
    One fused multiply-add per slice and block (``Tensor.add_`` with ``alpha``); exact on the
    fixed-point grid, so neither the blocking nor the fusing changes a bit. A small sum (at most
    ``_GATHER_VALUES`` values in all its slices) is one gather and one product instead, for the
    same reason with the same bits.
    """
    if len(terms) * length <= _GATHER_VALUES:  # small: one product instead of a call per slice
        offsets = np.array([offset for offset, _ in terms], np.int64)
        weights = np.array([weight for _, weight in terms], np.float64)
        return weights @ table.numpy()[offsets[:, None] + np.arange(length)].astype(np.float64)
    total = torch.zeros(length, dtype=torch.float64)
    for first in range(0, length, _SUM_BLOCK):
        block = total[first : first + _SUM_BLOCK]
        for offset, weight in terms:
            block.add_(table[offset + first : offset + first + len(block)], alpha=weight)
    return total.numpy()


def generation_sums(
    streams: Sequence[NoiseStream], weights: np.ndarray, exponents: tuple[int, int], share: tuple[int, int] = (0, 1)
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point sums of :func:`noise_sums` over a generation of one or more equal batches.

    Args:
        streams: Each batch's noise (more than one with ``num_interactions``).
        weights: The weights of the whole generation, batch after batch.
        exponents: From :func:`scales` on ``weights``.
        share: ``(k, m)``: only the ``k``-th of ``m`` contiguous shares of each batch's units (a
            process's part of the work; any split adds up to the same bits).
    """
    index, count = share
    sums = (np.zeros(streams[0].length, np.uint64), np.zeros(streams[0].length, np.uint64))
    for batch_weights, stream in zip(np.split(np.asarray(weights, np.float64), len(streams)), streams):
        units = stream.units(len(batch_weights))
        for total, part in zip(
            sums, noise_sums(stream, batch_weights, exponents, units * index // count, units * (index + 1) // count)
        ):
            total += part  # modulo 2**64: two's-complement integers
    return sums


def from_fixed(total: np.ndarray, exponent: int) -> np.ndarray:
    """The float64 value of a fixed-point sum (uint64 bits of a two's-complement int64)."""
    return np.ldexp(total.view(np.int64).astype(np.float64), -exponent)


class Replica(Protocol):
    """A searcher whose distribution every process holds and updates alike (the distributed mode under MPI).

    Each process keeps its own copy; the runtime compares their :func:`state_checksum` every round
    and sends rank 0's state only when it changed other than by the replicated update.
    """

    def replica_state(self) -> dict[str, Any]:
        """Everything the samples and the update read or write (tensors, numbers, nested dicts)."""
        ...

    def load_replica_state(self, state: Mapping[str, Any]) -> None:
        """Adopt another process's :meth:`replica_state`."""
        ...

    def replica_sample(self, stream: NoiseStream) -> GaussianSample:
        """The population of ``stream`` drawn around the current distribution."""
        ...

    def apply_noise_sums(
        self, sums: tuple[np.ndarray, np.ndarray], exponents: tuple[int, int], weight_sum: float
    ) -> None:
        """Update the distribution from a generation's :func:`generation_sums` of the whole population."""
        ...


def state_checksum(state: Mapping[str, Any]) -> int:
    """CRC-32 of a state (tensors and arrays by their bytes, other values by their repr), key by key in order.

    Any changed bit of a value changes it: ranks whose copies drifted apart are caught (3 ms for
    three float32 vectors of 10**6 values).
    """
    crc = 0
    for key in sorted(state):
        value = state[key]
        crc = zlib.crc32(repr(key).encode(), crc)
        if isinstance(value, Mapping):
            crc = zlib.crc32(state_checksum(value).to_bytes(4, "little"), crc)
        elif isinstance(value, (torch.Tensor, np.ndarray)):
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            crc = zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8), crc)
        else:
            crc = zlib.crc32(repr(value).encode(), crc)
    return crc


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
