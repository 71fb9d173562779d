"""hpcne: EvoTorch-style neuroevolution scaled with MPI and local process pools."""

from __future__ import annotations

__version__ = "0.1.0"

# Under a multi-rank MPI launcher, start MPI now and make any rank's uncaught error abort the
# job, so that a failure in a user's script before the first evaluation never hangs the others.
from hpcne.parallel.launch import prepare_mpi_job

prepare_mpi_job()

__all__ = ["__version__"]
