"""The runtime protocol and the choice of backend: serial, process pool or MPI."""

from __future__ import annotations

import atexit
import os
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from hpcne.parallel.devices import choose_device, env_local_rank

if TYPE_CHECKING:
    from hpcne.core import EvalResult, Problem

__all__ = ["BACKENDS", "Runtime", "SerialRuntime", "launcher_world_size", "make_runtime", "use_backend"]

BACKENDS = ("serial", "pool", "mpi")
_forced_backend: str | None = None
# Variables through which launchers announce the job size: Open MPI, MPICH/Hydra and PMI-2
# (also srun --mpi=pmi2), PMIx, and srun's own.
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")


class Runtime(Protocol):
    """Moves populations to where they are evaluated and brings fitnesses and side effects back."""

    is_main: bool
    num_workers: int
    stop_requested: bool

    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Evaluate the rows of ``values`` as round ``eval_round``; return the merged result."""
        ...

    def describe(self) -> str:
        """A human-readable description of the layout."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


class SerialRuntime:
    """Evaluates in the calling process."""

    is_main = True
    num_workers = 1
    stop_requested = False

    def __init__(self, problem: Problem) -> None:
        self._problem = problem
        self.devices = place_problem(problem, None)

    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Evaluate all rows here."""
        return self._problem._evaluate_local(values, 0, eval_round)

    def describe(self) -> str:
        """One line on the layout."""
        host, device = self.devices[0]
        return f"serial, in this process on {host} ({device})"

    def close(self) -> None:
        """Nothing to release."""


def use_backend(name: str | None) -> None:
    """Force a backend (``"serial"``, ``"pool"``, ``"mpi"``) for problems created from now on.

    ``None`` restores the automatic choice. The ``HPCNE_BACKEND`` environment variable does
    the same without code changes.
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    global _forced_backend
    _forced_backend = name


def launcher_world_size() -> int:
    """The number of processes the MPI launcher started (1 when not under a launcher)."""
    if "mpi4py.MPI" in sys.modules:
        return sys.modules["mpi4py.MPI"].COMM_WORLD.Get_size()
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def _requested_backend() -> str | None:
    name = _forced_backend or os.environ.get("HPCNE_BACKEND") or None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"HPCNE_BACKEND={name!r} is not a backend; choose one of {', '.join(BACKENDS)}.")
    return name


def _pool_size(num_actors: Any) -> int:
    from hpcne.parallel.pool import cpu_count

    if num_actors == "max":
        return cpu_count()
    if num_actors in ("num_gpus", "num_devices"):
        return max(torch.cuda.device_count(), 1)
    return int(num_actors or 1)


def place_problem(problem: Problem, comm: Any) -> list[tuple[str, str]]:
    """Put this process's networks on its device; return every rank's ``(host, device)``."""
    if comm is not None:
        from mpi4py import MPI

        local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    else:
        local_rank = env_local_rank() or 0
    device = choose_device(local_rank, problem.actor_config, problem.num_gpus_per_actor, problem.device)
    problem._use_device(device)
    threads = problem.actor_config.get("num_threads")
    if threads is not None or comm is not None:
        torch.set_num_threads(int(threads or 1))
    me = (socket.gethostname(), str(device))
    return comm.allgather(me) if comm is not None else [me]


def make_runtime(problem: Problem) -> Runtime:
    """Choose and start the runtime for ``problem`` and say which one on the main process.

    Under an MPI launcher with more than one rank: MPI. Otherwise ``num_actors`` decides:
    None/0/1 in-process, an int or ``"max"`` a local process pool. ``use_backend`` or
    ``HPCNE_BACKEND`` force a backend.
    """
    backend = _requested_backend()
    if backend is None:
        if launcher_world_size() > 1:
            backend = "mpi"
        else:
            backend = "pool" if _pool_size(problem.num_actors) > 1 else "serial"
    runtime: Runtime
    if backend == "mpi":
        from hpcne.parallel.mpi import MPIRuntime

        install_mpi_excepthook()
        runtime = MPIRuntime(problem)
    elif backend == "pool":
        from hpcne.parallel.pool import PoolRuntime

        runtime = PoolRuntime(problem, max(_pool_size(problem.num_actors), 1))
    else:
        runtime = SerialRuntime(problem)
    if runtime.is_main:
        atexit.register(runtime.close)
        if os.environ.get("HPCNE_QUIET") != "1":
            print(f"hpcne: evaluating with {runtime.describe()}", file=sys.stderr, flush=True)
    return runtime


def install_mpi_excepthook() -> None:
    """Make an uncaught exception end the whole MPI job instead of leaving other ranks waiting.

    Rank 0 prints the error and releases the workers on exit (its status is non-zero); any
    other rank prints the error with its rank and host and calls ``MPI_Abort``.
    """
    from mpi4py import MPI

    if getattr(sys.excepthook, "_hpcne", False):
        return
    previous = sys.excepthook
    rank = MPI.COMM_WORLD.Get_rank()

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if rank == 0:
            previous(kind, value, tb)
            return
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"hpcne: rank {rank} on {socket.gethostname()} failed:\n{text}")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

    hook._hpcne = True  # type: ignore[attr-defined]
    sys.excepthook = hook
