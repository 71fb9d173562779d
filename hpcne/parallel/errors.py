"""Errors raised by the parallel runtime."""

from __future__ import annotations

__all__ = ["WorkerError"]


class WorkerError(RuntimeError):
    """A worker (pool process or MPI rank) failed; the message names where and why.

    Attributes:
        worker: The worker's rank or pool index.
        host: The host it ran on.
        solution_index: The solution being evaluated, when known.
        remote_traceback: The traceback text from the worker.
    """

    def __init__(self, worker: int, host: str, solution_index: int | None, remote_traceback: str, *, kind: str) -> None:
        where = f"{kind} {worker} on host {host}"
        what = f" while evaluating solution {solution_index}" if solution_index is not None else ""
        super().__init__(f"{where} failed{what}:\n{remote_traceback.rstrip()}")
        self.worker = worker
        self.host = host
        self.solution_index = solution_index
        self.remote_traceback = remote_traceback
