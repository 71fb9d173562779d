"""Fixtures for the in-process MPI tests.

Run them on 2 and on 3 ranks::

    MPIEXEC_TIMEOUT=300 mpiexec -n 3 python -m mpi4py -m pytest --with-mpi -m mpi tests/mpi

Every rank runs every test. A test builds its problem on every rank and hands it to
:func:`spmd`: on rank 0 the body runs (evaluations are spread over all ranks) and the runtime
is closed at the end; the other ranks serve inside the body's first evaluation until then, and
get None. Without ``--with-mpi`` pytest-mpi skips these tests; tests/parallel runs the same
properties under ``mpiexec`` in subprocesses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from hpcne.core import Problem
from hpcne.parallel import WorkerReleased, runtime, signals

P = TypeVar("P", bound=Problem)
T = TypeVar("T")


@pytest.fixture
def comm() -> Any:
    """MPI.COMM_WORLD (imported here, so that a serial pytest run never initializes MPI)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD


def spmd(problem: P, body: Callable[[P], T]) -> T | None:
    """Run ``body(problem)`` on rank 0 while the other ranks serve; the workers get None."""
    try:
        return body(problem)
    except WorkerReleased:
        return None
    finally:
        problem.kill_actors()


@pytest.fixture(autouse=True)
def _clean_process(comm: Any) -> Iterator[None]:
    """Automatic backend choice, no stop request left over, and all ranks in step between tests."""
    runtime.use_backend(None)
    signals.clear_stop()
    yield
    signals.clear_stop()
    comm.Barrier()
