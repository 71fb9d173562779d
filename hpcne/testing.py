"""Assertions for tests of numeric results (EvoTorch's ``evotorch.testing``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from hpcne.tools.dtypes import to_numpy_dtype

__all__ = [
    "TestingError",
    "assert_allclose",
    "assert_almost_between",
    "assert_dtype_matches",
    "assert_eachclose",
    "assert_shape_matches",
]


class TestingError(Exception):
    """An assertion helper was called wrongly (not a failed assertion)."""


def _array(x: Any, dtype: Any = None) -> np.ndarray:
    """``x`` as a numpy array; float32 for plain sequences, as torch would make them."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    elif not isinstance(x, np.ndarray) and dtype is None:
        dtype = np.float32
    return np.asarray(x, dtype=dtype)


def assert_allclose(
    actual: Iterable, desired: Iterable, *, rtol: float | None = None, atol: float | None = None, equal_nan: bool = True
) -> None:
    """Assert that ``actual`` (cast to ``desired``'s dtype) is close to ``desired``; give rtol, atol or both.

    Raises:
        TestingError: If neither ``rtol`` nor ``atol`` is given.
    """
    if rtol is None and atol is None:
        raise TestingError("Give rtol, atol or both: a closeness test needs a tolerance.")
    want = _array(desired)
    got = _array(actual, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol or 0.0, atol=atol or 0.0, equal_nan=equal_nan)


def assert_eachclose(x: Iterable, value: Any, *, rtol: float | None = None, atol: float | None = None) -> None:
    """Assert that every element of ``x`` is close to the scalar ``value``."""
    got = _array(x)
    assert_allclose(got, np.full_like(got, float(value)), rtol=rtol, atol=atol)


def assert_almost_between(x: Iterable, lb: Any, ub: Any, *, atol: float | None = None) -> None:
    """Assert that ``lb - atol <= x <= ub + atol`` element-wise (bounds scalars or arrays)."""
    got = _array(x)
    margin = 0.0 if atol is None else float(atol)
    lo = np.broadcast_to(_array(lb, got.dtype), got.shape) - margin
    hi = np.broadcast_to(_array(ub, got.dtype), got.shape) + margin
    assert np.all((got >= lo) & (got <= hi)), f"Values {got} are not within [{lo}, {hi}]."


def assert_dtype_matches(x: Any, dtype: Any) -> None:
    """Assert that ``x.dtype`` is ``dtype`` (given as torch/numpy dtype, name or type)."""
    actual, wanted = to_numpy_dtype(x.dtype), to_numpy_dtype(dtype)
    assert actual == wanted, f"dtype mismatch: found {actual}, expected {wanted}."


def assert_shape_matches(x: Any, shape: tuple[int, ...] | int) -> None:
    """Assert that ``x`` (anything torch can turn into a tensor) has ``shape``."""
    got = tuple(x.shape) if isinstance(x, (torch.Tensor, np.ndarray)) else tuple(torch.as_tensor(x).shape)
    wanted = (int(shape),) if isinstance(shape, int) else tuple(shape)
    assert got == wanted, f"shape mismatch: found {got}, expected {wanted}."
