"""Errors raised by the parallel runtime, and the exit of released MPI worker ranks."""

from __future__ import annotations

__all__ = ["WorkerError", "WorkerReleased"]


class WorkerError(RuntimeError):
    """A worker (pool process or MPI rank) failed; the message names where, when and why.

    Attributes:
        worker: The worker's rank or pool index.
        host: The host it ran on.
        solution_index: The solution being evaluated, when known.
        remote_traceback: The traceback text (or the description of the failure) from the worker.
    """

    def __init__(
        self,
        worker: int,
        host: str,
        solution_index: int | None,
        remote_traceback: str,
        *,
        kind: str,
        stage: str | None = None,
    ) -> None:
        """Describe the failure.

        Args:
            worker: The worker's rank or pool index.
            host: The host it ran on.
            solution_index: The solution being evaluated, when known.
            remote_traceback: The worker's traceback or a description of what happened.
            kind: ``"rank"`` or ``"pool worker"``.
            stage: When it failed, e.g. ``"at start-up"``, if not while evaluating.
        """
        if solution_index is not None:
            when = f" while evaluating solution {solution_index}"
        else:
            when = f" {stage}" if stage else ""
        super().__init__(f"{kind} {worker} on host {host} failed{when}:\n{remote_traceback.rstrip()}")
        self.worker = worker
        self.host = host
        self.solution_index = solution_index
        self.remote_traceback = remote_traceback


class WorkerReleased(SystemExit):
    """Raised on an MPI worker rank when rank 0 closes the runtime.

    It is a ``SystemExit`` with status 0, so a script run under ``mpiexec`` needs nothing: the
    worker ranks leave it quietly while rank 0 carries on. Code that runs on every rank and must
    go on afterwards (a pytest session under ``--with-mpi``) catches it.
    """

    def __init__(self) -> None:
        super().__init__(0)
