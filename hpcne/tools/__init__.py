"""Small helpers shared across hpcne, mirroring ``evotorch.tools``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["as_numpy", "device_of", "dtype_of", "numpy_dtype_of"]


def dtype_of(x: nn.Module | torch.Tensor) -> torch.dtype:
    """Return the dtype of a tensor, or of the first parameter (or buffer) of a module.

    Args:
        x: A tensor or a module.

    Returns:
        The dtype; ``torch.float32`` for a module without parameters.
    """
    if isinstance(x, torch.Tensor):
        return x.dtype
    for t in (*x.parameters(), *x.buffers()):
        return t.dtype
    return torch.float32


def device_of(x: nn.Module | torch.Tensor) -> torch.device:
    """Return the device of a tensor, or of the first parameter (or buffer) of a module.

    Args:
        x: A tensor or a module.

    Returns:
        The device; ``cpu`` for a module without parameters.
    """
    if isinstance(x, torch.Tensor):
        return x.device
    for t in (*x.parameters(), *x.buffers()):
        return t.device
    return torch.device("cpu")


def numpy_dtype_of(dtype: torch.dtype) -> np.dtype:
    """Return the numpy dtype equivalent to a torch dtype."""
    return torch.empty((), dtype=dtype).numpy().dtype


def as_numpy(x: Any, dtype: np.dtype | str | None = None) -> np.ndarray:
    """Convert a tensor, array or sequence to a numpy array (detached, on the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)
