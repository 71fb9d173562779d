"""How a population is cut into pieces for the workers."""

from __future__ import annotations

import numpy as np

__all__ = ["contiguous_counts", "pieces"]


def contiguous_counts(n: int, parts: int) -> np.ndarray:
    """Sizes of ``parts`` contiguous pieces of ``n`` rows, as equal as possible (first ones larger)."""
    counts = np.full(parts, n // parts, dtype=np.int64)
    counts[: n % parts] += 1
    return counts


def pieces(n: int, num_workers: int, num_subbatches: int | None, subbatch_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges: one per worker, or the requested subbatches."""
    if subbatch_size is not None:
        return [(s, min(s + subbatch_size, n)) for s in range(0, n, subbatch_size)]
    counts = contiguous_counts(n, min(num_subbatches or num_workers, max(n, 1)))
    stops = np.cumsum(counts)
    return [(int(b - c), int(b)) for b, c in zip(stops, counts) if c > 0]
