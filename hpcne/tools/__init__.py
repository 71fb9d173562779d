"""Small helpers shared across hpcne, mirroring ``evotorch.tools``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hpcne.tools import cloning
from hpcne.tools.cloning import clone, deep_clone, storage_ptr
from hpcne.tools.dtypes import DType, to_numpy_dtype, to_torch_dtype
from hpcne.tools.hook import Hook

__all__ = [
    "DType",
    "Hook",
    "as_numpy",
    "clone",
    "cloning",
    "deep_clone",
    "device_of",
    "dtype_of",
    "make_uniform",
    "numpy_dtype_of",
    "storage_ptr",
    "to_numpy_dtype",
    "to_torch_dtype",
]


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


def make_uniform(
    *size: Any,
    lb: Any = None,
    ub: Any = None,
    dtype: Any = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A tensor of ``size`` drawn uniformly from ``[lb, ub)`` (default ``[0, 1)``).

    Integer dtypes draw from ``lb..ub`` inclusive; ``torch.bool`` draws fair coin flips.
    """
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        size = tuple(size[0])
    dtype = torch.float32 if dtype is None else to_torch_dtype(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, size, generator=generator, device=device).to(torch.bool)
    if not dtype.is_floating_point:
        low, high = int(0 if lb is None else lb), int(1 if ub is None else ub)
        return torch.randint(low, high + 1, size, generator=generator, device=device, dtype=dtype)
    u = torch.rand(size, generator=generator, device=device, dtype=dtype)
    lo = torch.as_tensor(0.0 if lb is None else lb, dtype=dtype, device=u.device)
    hi = torch.as_tensor(1.0 if ub is None else ub, dtype=dtype, device=u.device)
    return lo + u * (hi - lo)
