"""A one-dimensional array of arbitrary Python objects (EvoTorch's ``ObjectArray``, without problem support)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["ObjectArray"]


class ObjectArray:
    """A fixed-length sequence of Python objects with a tensor-like ``shape``, ``dtype`` and ``clone``.

    hpcne problems are numeric (see docs/EVOTORCH.md); this container is here for code that uses
    it directly.
    """

    def __init__(self, size: int | None = None, *, slice_of: Iterable[Any] | None = None) -> None:
        """Create ``size`` slots holding None, or an array holding the items of ``slice_of``."""
        items = [None] * int(size or 0) if slice_of is None else list(slice_of)
        self._data = np.empty(len(items), dtype=object)
        self._data[:] = items

    @property
    def shape(self) -> tuple[int]:
        """``(len(self),)``."""
        return (len(self._data),)

    @property
    def dtype(self) -> np.dtype:
        """Always numpy's object dtype."""
        return self._data.dtype

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: Any) -> Any:
        found = self._data[index]
        return ObjectArray(slice_of=found) if isinstance(found, np.ndarray) else found

    def __setitem__(self, index: Any, value: Any) -> None:
        self._data[index] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data.tolist())

    def clone(self) -> ObjectArray:
        """A deep copy."""
        return ObjectArray(slice_of=copy.deepcopy(self._data.tolist()))

    def __repr__(self) -> str:
        return f"ObjectArray({self._data.tolist()!r})"
