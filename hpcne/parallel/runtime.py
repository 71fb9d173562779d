"""The runtime protocol and the choice of backend: serial, process pool or MPI."""

from __future__ import annotations

import atexit
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from hpcne import watchdog
from hpcne.parallel import signals
from hpcne.parallel.devices import choose_device, env_local_rank
from hpcne.parallel.errors import WorkerError
from hpcne.parallel.launch import install_mpi_excepthook, launcher_world_size
from hpcne.parallel.sampled import LocalSampling
from hpcne.parallel.threads import limit_threads
from hpcne.parallel.worker import describe_exception, describe_piece

if TYPE_CHECKING:
    from hpcne.core import EvalResult, Problem
    from hpcne.sampling import GaussianSample, NoiseStream, Replica

__all__ = [
    "BACKENDS",
    "Runtime",
    "SerialRuntime",
    "install_mpi_excepthook",
    "launcher_world_size",
    "make_runtime",
    "place_problem",
    "use_backend",
]

BACKENDS = ("serial", "pool", "mpi")
_forced_backend: str | None = None


class Runtime(Protocol):
    """Moves populations to where they are evaluated and brings fitnesses and side effects back."""

    is_main: bool
    num_workers: int
    stop_requested: bool
    compute_seconds: float
    """Evaluation time of the busiest worker in the last round; the rest of the round's wall time on
    the coordinator is communication and coordination (the results file's ``comm_time``)."""

    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Evaluate the rows of ``values`` as round ``eval_round``; return the merged result."""
        ...

    def evaluate_sampled(self, sample: GaussianSample, popsize: int, replica: Replica | None = None) -> EvalResult:
        """Evaluate rows ``0..popsize-1`` of ``sample``, each generated where it is evaluated.

        ``replica`` is the searcher that drew the sample, when every process holds a copy of it.
        """
        ...

    def update_distribution(
        self, replica: Replica, streams: Sequence[NoiseStream], weights: np.ndarray, exponents: tuple[int, int]
    ) -> None:
        """Apply the generation's update (:meth:`Replica.apply_noise_sums`) to every process's copy."""
        ...

    def describe(self) -> str:
        """A human-readable description of the layout."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


class SerialRuntime(LocalSampling):
    """Evaluates in the calling process."""

    is_main = True
    num_workers = 1

    def __init__(self, problem: Problem) -> None:
        self._problem = problem
        self.stop_requested = False
        self.compute_seconds = 0.0
        self.devices = [place_problem(problem, env_local_rank() or 0, single_threaded=False)]
        watchdog.configure(f"the evaluating process (pid {os.getpid()}) on host {self.devices[0][0]}")

    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Evaluate all rows here."""
        started = time.perf_counter()
        try:
            with watchdog.watching(describe_piece(0, len(values), eval_round)):
                result = self._problem._evaluate_local(values, 0, eval_round)
        except signals.Interrupted:
            raise
        except (SystemExit, KeyboardInterrupt) as err:  # from user code: a failure, not a quiet exit
            failure = describe_exception(err)
            host = self.devices[0][0]
            raise WorkerError(0, host, failure.solution_index, failure.traceback, kind="serial process") from None
        self.compute_seconds = result.seconds = time.perf_counter() - started
        self.stop_requested = signals.stop_requested()
        return result

    def describe(self) -> str:
        """One line on the layout."""
        host, device = self.devices[0]
        return f"serial, 1 worker (this process) on {host} ({device})"

    def close(self) -> None:
        """Nothing to release."""


def use_backend(name: str | None) -> None:
    """Force a backend (``"serial"``, ``"pool"``, ``"mpi"``) for problems created from now on.

    ``None`` restores the automatic choice. The ``HPCNE_BACKEND`` environment variable does
    the same without code changes; ``use_backend`` takes precedence over it, and under an MPI
    launcher it applies to the calling process only (``"serial"`` on rank 0 evaluates there alone).
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    global _forced_backend
    _forced_backend = name


def _requested_backend() -> str | None:
    name = os.environ.get("HPCNE_BACKEND", "").strip().lower() or None
    if name is not None and name not in BACKENDS:
        raise ValueError(
            f"HPCNE_BACKEND={os.environ['HPCNE_BACKEND']!r} is not a backend; choose one of "
            f"{', '.join(BACKENDS)}, or unset it for the automatic choice."
        )
    return name


def _pool_size(num_actors: Any) -> int:
    from hpcne.parallel.pool import cpu_count

    if num_actors == "max":
        return cpu_count()
    if num_actors in ("num_gpus", "num_devices"):
        return max(torch.cuda.device_count(), 1)
    return int(num_actors or 1)


def place_problem(problem: Problem, local_rank: int, *, single_threaded: bool) -> tuple[str, str]:
    """Put this process's networks on its device; return ``(host, device)``.

    A worker that shares the node with other workers (an MPI rank, a pool process) is
    ``single_threaded``: torch and BLAS get one thread unless ``actor_config={"num_threads": n}``
    says otherwise.
    """
    device = choose_device(local_rank, problem.actor_config, problem.num_gpus_per_actor, problem.device)
    problem._use_device(device)
    threads = problem.actor_config.get("num_threads")
    if threads is not None or single_threaded:
        limit_threads(int(threads or 1))
    return socket.gethostname(), str(device)


def _choose_backend(problem: Problem) -> str:
    if _forced_backend is not None:  # the program's own choice for this process
        return _forced_backend
    backend = _requested_backend()
    ranks = launcher_world_size()
    if backend is None:
        if ranks > 1:
            return "mpi"
        return "pool" if _pool_size(problem.num_actors) > 1 else "serial"
    if backend != "mpi" and ranks > 1:
        raise ValueError(
            f"HPCNE_BACKEND={backend!r}, but this process is one of {ranks} MPI ranks: every rank would "
            "run the whole search on its own. Use HPCNE_BACKEND=mpi (or unset it) under an MPI launcher, "
            "or start a single process."
        )
    return backend


def make_runtime(problem: Problem) -> Runtime:
    """Choose and start the runtime for ``problem`` and say which one on the main process.

    Under an MPI launcher with more than one rank: MPI. Otherwise ``num_actors`` decides:
    None/0/1 in-process, an int or ``"max"`` a local process pool. ``HPCNE_BACKEND`` forces a
    backend (a local one is refused under a multi-rank launcher); ``use_backend`` forces one for
    this process whatever the launcher (e.g. an evaluation on rank 0 alone). ``HPCNE_QUIET=1``
    silences the start-up line.
    """
    backend = _choose_backend(problem)
    watchdog.hang_timeout()  # a bad HPCNE_HANG_TIMEOUT fails here, not in a worker
    runtime: Runtime
    if backend == "mpi":
        from hpcne.parallel.mpi import MPIRuntime

        install_mpi_excepthook()
        runtime = MPIRuntime(problem)
    elif backend == "pool":
        from hpcne.parallel.pool import PoolRuntime, cap_workers

        runtime = PoolRuntime(problem, cap_workers(max(_pool_size(problem.num_actors), 1)))
    else:
        runtime = SerialRuntime(problem)
    atexit.register(runtime.close)
    if os.environ.get("HPCNE_QUIET") != "1":
        print(f"hpcne: evaluating with {runtime.describe()}", file=sys.stderr, flush=True)
    return runtime
