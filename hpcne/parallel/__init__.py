"""Parallel evaluation runtimes: serial, a local process pool, and MPI ranks, behind one protocol.

Importing this package under an MPI launcher with several ranks initializes MPI and makes an
uncaught exception on any rank end the job (see :mod:`hpcne.parallel.launch`).
"""

from __future__ import annotations

from hpcne.parallel.errors import WorkerError, WorkerReleased
from hpcne.parallel.launch import prepare_mpi_job
from hpcne.parallel.runtime import Runtime, SerialRuntime, make_runtime, use_backend

__all__ = ["Runtime", "SerialRuntime", "WorkerError", "WorkerReleased", "make_runtime", "use_backend"]

prepare_mpi_job()
