"""hpcne: EvoTorch-style neuroevolution scaled with MPI and local process pools."""

from __future__ import annotations

__version__ = "0.1.0"

# Under a multi-rank MPI launcher, start MPI now and make any rank's uncaught error abort the
# job, so that a failure in a user's script before the first evaluation never hangs the others.
from hpcne.parallel.launch import prepare_mpi_job

prepare_mpi_job()

# EvoTorch's top level: the core classes, and the subpackages as attributes. These load on first
# use (PEP 562), so that `import hpcne` in every pool worker and MPI rank stays light.
import importlib  # noqa: E402
from typing import Any  # noqa: E402

from hpcne.problem import Problem  # noqa: E402
from hpcne.solution import Solution, SolutionBatch  # noqa: E402

_SUBPACKAGES = ("algorithms", "logging", "neuroevolution", "operators", "optimizers", "testing", "tools")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"hpcne.{name}")
    raise AttributeError(f"module 'hpcne' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES})


__all__ = ["Problem", "Solution", "SolutionBatch", "__version__", *_SUBPACKAGES]
