"""hpcne: EvoTorch-style neuroevolution scaled with MPI and local process pools."""

from __future__ import annotations

__version__ = "0.1.0"

# Under a multi-rank MPI launcher, start MPI now and make any rank's uncaught error abort the
# job, so that a failure in a user's script before the first evaluation never hangs the others.
from hpcne.parallel.launch import prepare_mpi_job

prepare_mpi_job()

# EvoTorch's top level: the core classes, and the subpackages reachable as attributes.
from hpcne import algorithms, logging, neuroevolution, optimizers, tools  # noqa: E402
from hpcne.problem import Problem  # noqa: E402
from hpcne.solution import Solution, SolutionBatch  # noqa: E402

__all__ = [
    "Problem",
    "Solution",
    "SolutionBatch",
    "__version__",
    "algorithms",
    "logging",
    "neuroevolution",
    "optimizers",
    "tools",
]
