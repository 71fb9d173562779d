"""MPI: rank 0 coordinates and evaluates a share; the other ranks serve until told to stop.

Every rank runs the same program and builds its own problem (SPMD). One evaluation round:

    rank 0: Bcast header [command, round, n] and the frozen sync state (observation stats)
    all:    Scatterv rows (float32) | evaluate own rows | Gatherv fitnesses (float64)
    all:    Allreduce [obs-stat delta | episodes, interactions, failures, stop requests]

With ``num_subbatches``/``subbatch_size`` the Scatterv is replaced by request/reply messages
so that a rank that finishes early takes the next piece. Failures travel as text through the
same collectives, so a raising rank never leaves the others waiting.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import numpy as np

from hpcne.core import EvalResult, Problem
from hpcne.parallel import signals
from hpcne.parallel.errors import WorkerError
from hpcne.parallel.split import contiguous_counts, pieces
from hpcne.parallel.worker import Failure, evaluate_piece

__all__ = ["MPIRuntime"]

CMD_STOP, CMD_EVAL, CMD_EVAL_DYNAMIC = 0, 1, 2
TAG_RESULT, TAG_WORK = 11, 12
_TAIL = 4  # episodes, interactions, failures, stop requests


class MPIRuntime:
    """Evaluation over the ranks of an MPI communicator."""

    def __init__(self, problem: Problem, comm: Any = None) -> None:
        """Join the other ranks: agree on the seed and check they built the same problem.

        On ranks other than 0 this never returns: the rank serves evaluation requests and
        exits the process (status 0) when rank 0 stops, so the rest of the user's script
        runs on rank 0 only.
        """
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_main = self.rank == 0
        self.num_workers = self.size
        self.stop_requested = False
        self._problem = problem
        self._closed = False
        seed = int(self.comm.bcast(problem.seed, root=0))
        if not self.is_main:  # workers adopt rank 0's seed (it may have been drawn at random)
            problem.seed = seed
            problem._reseed()
        from hpcne.parallel.runtime import place_problem

        self.devices = place_problem(problem, self.comm)
        lengths = self.comm.allgather(problem.solution_length)
        if len(set(lengths)) != 1:
            raise RuntimeError(
                f"The ranks built different problems: parameter counts per rank {lengths}. "
                "Every rank must run the same script with the same arguments."
            )
        self._delta_len = len(problem._sync_buffer())
        if not self.is_main:
            self._serve()
            self.comm.Barrier()
            sys.exit(0)

    def describe(self) -> str:
        """The rank → host → device map."""
        lines = [f"MPI, {self.size} ranks (rank 0 coordinates and evaluates a share):"]
        lines += [f"  rank {r}: {host} {dev}" for r, (host, dev) in enumerate(self.devices[:16])]
        if self.size > 16:
            lines.append(f"  ... and {self.size - 16} more ranks on {len({h for h, _ in self.devices})} hosts")
        return "\n".join(lines)

    # ---------------------------------------------------------------- rank 0
    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Evaluate the rows across all ranks (rank 0 only)."""
        p = self._problem
        dynamic = p.num_subbatches is not None or p.subbatch_size is not None
        header = np.array([CMD_EVAL_DYNAMIC if dynamic else CMD_EVAL, eval_round, len(values)], np.int64)
        self.comm.Bcast(header, root=0)
        self._bcast_sync()
        if dynamic:
            fitness, parts, failure = self._coordinate_dynamic(values, eval_round)
        else:
            fitness, parts, failure = self._scatter_gather(values, eval_round, len(values))
        return self._finish(fitness, parts, failure)

    def _coordinate_dynamic(
        self, values: np.ndarray, eval_round: int
    ) -> tuple[np.ndarray, list[EvalResult], Failure | None]:
        """Hand out pieces on request; evaluate pieces here between requests."""
        p, MPI = self._problem, self._MPI
        todo = deque(pieces(len(values), self.size, p.num_subbatches, p.subbatch_size))
        fitness = np.empty(len(values))
        parts: list[EvalResult] = []
        failure: Failure | None = None
        working = 0
        for worker in range(1, self.size):  # first piece for everyone
            working += self._send_piece(worker, values, todo)
        while todo or working:
            status = MPI.Status()
            if working and (not todo or self.comm.Iprobe(MPI.ANY_SOURCE, TAG_RESULT, status)):
                if not todo:
                    self.comm.Probe(MPI.ANY_SOURCE, TAG_RESULT, status)
                message = np.empty(status.Get_count(MPI.DOUBLE))
                self.comm.Recv(message, source=status.Get_source(), tag=TAG_RESULT)
                start = int(message[0])
                fitness[start : start + len(message) - 1] = message[1:]
                working -= 1
                working += self._send_piece(status.Get_source(), values, todo)
                continue
            start, stop = todo.popleft()
            result = evaluate_piece(p, values[start:stop], start, eval_round)
            if isinstance(result, Failure):
                failure = failure or result
                fitness[start:stop] = np.nan
            else:
                fitness[start:stop] = result.fitness
                parts.append(result)
        return fitness, parts, failure

    def _send_piece(self, worker: int, values: np.ndarray, todo: deque[tuple[int, int]]) -> int:
        """Send the next piece to ``worker`` (or 'no more work'); return 1 if a piece was sent."""
        if not todo:
            self.comm.Send(np.array([-1, 0], np.int64), dest=worker, tag=TAG_WORK)
            return 0
        start, stop = todo.popleft()
        self.comm.Send(np.array([start, stop], np.int64), dest=worker, tag=TAG_WORK)
        self.comm.Send(np.ascontiguousarray(values[start:stop]), dest=worker, tag=TAG_WORK)
        return 1

    # -------------------------------------------------------------- all ranks
    def _bcast_sync(self) -> None:
        if self._delta_len:
            sync = self._problem._sync_buffer() if self.is_main else np.empty(self._delta_len)
            self.comm.Bcast(sync, root=0)
            if not self.is_main:
                self._problem._load_sync_buffer(sync)

    def _scatter_gather(
        self, values: np.ndarray | None, eval_round: int, n: int
    ) -> tuple[np.ndarray | None, list[EvalResult], Failure | None]:
        """Static split: one contiguous piece per rank, buffer-based collectives."""
        p = self._problem
        width, dtype = p.solution_length, p.wire_dtype
        counts = contiguous_counts(n, self.size)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        mine = np.empty((counts[self.rank], width), dtype)
        send = [values, counts * width, starts * width, self._MPI._typedict[dtype.char]] if self.is_main else None
        self.comm.Scatterv(send, mine, root=0)
        result = evaluate_piece(p, mine, int(starts[self.rank]), eval_round)
        failure = result if isinstance(result, Failure) else None
        local = np.full(len(mine), np.nan) if failure else result.fitness
        fitness = np.empty(n) if self.is_main else None
        self.comm.Gatherv(local, [fitness, counts, starts, self._MPI.DOUBLE] if self.is_main else None, root=0)
        return fitness, ([] if failure else [result]), failure

    def _finish(self, fitness: np.ndarray | None, parts: list[EvalResult], failure: Failure | None) -> EvalResult:
        """Allreduce the side effects; report failures on rank 0 and stop the run."""
        local = EvalResult.merge(parts) if parts else EvalResult(np.empty(0))
        buffer = np.zeros(self._delta_len + _TAIL)
        if local.obs_delta is not None:
            buffer[: self._delta_len] = local.obs_delta
        buffer[self._delta_len :] = [
            local.episodes,
            local.interactions,
            failure is not None,
            signals.stop_requested(),
        ]
        self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
        episodes, interactions, failures, stops = buffer[self._delta_len :]
        self.stop_requested = stops > 0
        if failures:
            reports = self.comm.gather((self.rank, failure), root=0)
            if self.is_main:
                rank, first = next((r, f) for r, f in reports if f is not None)
                raise WorkerError(rank, first.host, first.solution_index, first.traceback, kind="rank")
            return EvalResult(np.empty(0))
        return EvalResult(
            fitness if fitness is not None else np.empty(0),
            int(episodes),
            int(interactions),
            buffer[: self._delta_len].copy() if self._delta_len else None,
        )

    # ---------------------------------------------------------------- workers
    def _serve(self) -> None:
        """Worker ranks: follow rank 0's commands until it says stop."""
        p, _MPI = self._problem, self._MPI
        header = np.empty(3, np.int64)
        while True:
            self.comm.Bcast(header, root=0)
            command, eval_round, n = (int(v) for v in header)
            if command == CMD_STOP:
                return
            self._bcast_sync()
            if command == CMD_EVAL:
                _, parts, failure = self._scatter_gather(None, eval_round, n)
            else:
                parts, failure = [], None
                span = np.empty(2, np.int64)
                while True:
                    self.comm.Recv(span, source=0, tag=TAG_WORK)
                    start, stop = int(span[0]), int(span[1])
                    if start < 0:
                        break
                    rows = np.empty((stop - start, p.solution_length), p.wire_dtype)
                    self.comm.Recv(rows, source=0, tag=TAG_WORK)
                    result = evaluate_piece(p, rows, start, eval_round)
                    if isinstance(result, Failure):
                        failure = failure or result
                        fit = np.full(stop - start, np.nan)
                    else:
                        parts.append(result)
                        fit = result.fitness
                    self.comm.Send(np.concatenate([[start], fit]), dest=0, tag=TAG_RESULT)
            total = self._finish(None, parts, failure)
            if failure is not None:
                continue  # rank 0 raises and will send stop
            p._eval_round = eval_round + 1
            p._apply_eval_result(total)

    def close(self) -> None:
        """Release the worker ranks (rank 0); they exit their processes."""
        if self._closed or not self.is_main:
            return
        self._closed = True
        self.comm.Bcast(np.array([CMD_STOP, 0, 0], np.int64), root=0)
        self.comm.Barrier()
