"""How populations are cut into pieces."""

from __future__ import annotations

import pytest

from hpcne.parallel.split import contiguous_counts, pieces


@pytest.mark.parametrize("n", [0, 1, 2, 7, 11, 1000])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_contiguous_counts_are_as_equal_as_possible(n: int, parts: int) -> None:
    counts = contiguous_counts(n, parts)
    assert len(counts) == parts
    assert counts.sum() == n
    assert counts.max() - counts.min() <= 1
    assert list(counts) == sorted(counts, reverse=True)


@pytest.mark.parametrize(
    ("n", "workers", "num_subbatches", "subbatch_size", "expected"),
    [
        (11, 2, None, None, [(0, 6), (6, 11)]),
        (12, 2, 7, None, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 11), (11, 12)]),
        (12, 2, None, 5, [(0, 5), (5, 10), (10, 12)]),
        (2, 3, None, None, [(0, 1), (1, 2)]),  # never an empty piece
        (3, 2, 10, None, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_pieces_cover_the_population_in_order(
    n: int, workers: int, num_subbatches: int | None, subbatch_size: int | None, expected: list[tuple[int, int]]
) -> None:
    assert pieces(n, workers, num_subbatches, subbatch_size) == expected
