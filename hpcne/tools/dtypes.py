"""Dtype names and conversions between numpy, torch and strings (EvoTorch's ``DType`` helpers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["DType", "to_numpy_dtype", "to_torch_dtype"]

DType = str | torch.dtype | np.dtype | type


def to_torch_dtype(dtype: Any) -> torch.dtype:
    """Return the torch dtype for a torch dtype, a numpy dtype, a name (``"float32"``) or a type (``float``).

    Raises:
        TypeError: For ``object``/``Any`` (no numeric tensor can hold it) or an unknown dtype.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype.removeprefix("torch."), None), torch.dtype):
        return getattr(torch, dtype.removeprefix("torch."))
    if dtype is Any or dtype is object or dtype in ("Any", "object", "O"):
        raise TypeError(f"Cannot make a numeric tensor with dtype {dtype!r}; hpcne has no object-dtype solutions.")
    try:
        return torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    except TypeError as err:
        raise TypeError(f"{dtype!r} is not a dtype torch knows (e.g. 'float32', torch.int64, np.float64).") from err


def to_numpy_dtype(dtype: Any) -> np.dtype:
    """Return the numpy dtype for a torch dtype, a numpy dtype, a name or a type (``Any`` → object)."""
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype
    if dtype is Any or dtype == "Any":
        return np.dtype(object)
    return np.dtype(dtype)
