"""The thread pools of a worker process: torch's, and the BLAS library's under numpy.

A node runs one worker per core, so each worker computes on one thread unless told otherwise;
otherwise N workers start N x cores threads that take turns on the same cores.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

import torch

__all__ = ["limit_threads"]

# Thread-count setters of BLAS builds: OpenBLAS (plain, 64-bit-integer, and numpy's scipy-openblas) and MKL.
_SETTERS = {
    "openblas": ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_"),
    "mkl_rt": ("MKL_Set_Num_Threads",),
}


def limit_threads(threads: int) -> None:
    """Make torch and the loaded BLAS libraries compute on ``threads`` threads."""
    torch.set_num_threads(threads)
    for setter in _blas_setters():
        setter(threads)


def _blas_setters() -> list[Callable[[int], None]]:
    """The thread-count setters of the BLAS libraries loaded in this process (Linux; none elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if ".so" in line and "/" in line}
    setters = []
    for path in sorted(paths):
        names = next((names for key, names in _SETTERS.items() if key in path.rsplit("/", 1)[-1].lower()), ())
        if not names:
            continue
        library = ctypes.CDLL(path)
        setters += [getattr(library, name) for name in names if hasattr(library, name)]
    return setters
