"""MPI: rank 0 coordinates and evaluates a share; the other ranks serve until told to stop.

Every rank runs the same program and builds its own problem (SPMD). The runtime talks on its
own duplicate of the communicator, so a script's own messages never mix with it.

Start-up (collective, in :class:`MPIRuntime`): the ranks adopt rank 0's seed, place their
problem on a device and report ``(host, device, parameter count, state length)`` or the error
that stopped them. A failed or mismatched rank makes rank 0 raise before any work is sent.

One evaluation round:

    rank 0:  Bcast [command, round, n | frozen sync state (observation statistics)]
    static:  Scatterv rows (wire dtype) | each rank evaluates its piece
    dynamic: rank 0 sends (start, stop) and rows to a rank that asks; the rank replies
             [start, failed, episodes, interactions, has delta, obs delta | fitnesses]; rank 0 evaluates
             pieces itself between messages and merges the pieces in population order
    all:     Allreduce [fitnesses | obs delta | episodes, interactions, deltas, failures, stop requests |
             seconds each rank spent evaluating] (each rank fills in its own rows' fitnesses and its
             own seconds, zeros elsewhere: the sum is exact)

Distributed mode (PGPE, SNES and CEM with ``distributed=True``; see :mod:`hpcne.sampling`): no
parameter rows travel, only ``O(d + popsize)`` numbers per rank. Every rank holds a copy of the
searcher (the same script builds it on every rank) and applies the same update to it.

    rank 0:  Bcast the header as above, then [how, symmetric, CRC-32 of its searcher state];
             its state follows (bcast) only when it changed other than by the update below
    worker:  a copy whose CRC-32 differs from rank 0's fails the round (drift), before any row
    static:  each rank generates its contiguous share of rows from their indices, a chunk at a time
    dynamic: as above, but a piece travels as (start, stop) alone
    all:     the same Allreduce
  then the generation's update:
    rank 0:  Bcast [NOISE_SUMS, first round, n], then [weights | exponents, symmetric, batches] (float64)
    all:     fixed-point sums over a contiguous share of each batch's units; Allreduce (uint64 SUM:
             exact, so any split gives the same bits); every rank applies the update to its copy
  A sample without a searcher (``Problem.evaluate_sampled`` called directly) has its centre and
  stdev broadcast instead.

A failure travels as a flag in the Allreduce (and stops further dynamic pieces); the ranks
then gather the failure texts to rank 0, which raises :class:`WorkerError`. Every round thus
ends with every rank out of its collectives, and the runtime stays usable.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hpcne import watchdog
from hpcne.core import EvalResult, Problem
from hpcne.parallel import signals
from hpcne.parallel.devices import node_placement
from hpcne.parallel.errors import WorkerError, WorkerReleased
from hpcne.parallel.launch import abort_job
from hpcne.parallel.runtime import place_problem
from hpcne.parallel.split import contiguous_counts, pieces
from hpcne.parallel.worker import Failure, describe_exception, evaluate_piece
from hpcne.sampling import NOISE_TABLE_ENV, GaussianSample, NoiseStream, Replica, generation_sums, state_checksum

__all__ = ["MPIRuntime"]

CMD_STOP, CMD_EVAL, CMD_EVAL_DYNAMIC, CMD_EVAL_SAMPLED, CMD_EVAL_SAMPLED_DYNAMIC, CMD_NOISE_SUMS = range(6)
TAG_RESULT, TAG_WORK = 11, 12
_HEAD = 3  # command, round, n
_TAIL = 5  # episodes, interactions, pieces with an obs delta, failures, stop requests
_RESULT_HEAD = 5  # start, failed, episodes, interactions, has an obs delta
_SAMPLE_SENT, _SAMPLE_REPLICA, _SAMPLE_REPLICA_STATE = range(3)  # how the workers get a round's sample


@dataclass
class _StartReport:
    """What a rank tells the others at start-up."""

    host: str
    device: str
    solution_length: int
    state_length: int
    noise_table: str  # HPCNE_NOISE_TABLE as set here: it decides the populations, so every rank needs the same
    failure: str | None


class MPIRuntime:
    """Evaluation over the ranks of an MPI communicator."""

    _open: ClassVar[set[MPIRuntime]] = set()  # rank 0's runtimes not yet closed
    _workers_joined: ClassVar[bool] = False  # the workers of this job have met rank 0 in a runtime

    @classmethod
    def can_exit_cleanly(cls) -> bool:
        """Whether rank 0 may end without ``MPI_Abort`` (the workers are released or will be at exit)."""
        return cls._workers_joined and not any(rt._in_round for rt in cls._open)

    def __init__(self, problem: Problem, comm: Any = None) -> None:
        """Join the other ranks (collective): agree on the seed, place the problem, check the ranks.

        On ranks other than 0 this does not return: the rank serves evaluation requests until
        rank 0 closes the runtime, then raises :class:`WorkerReleased` (a ``SystemExit`` with
        status 0), so the rest of the user's script runs on rank 0 only.

        Raises:
            WorkerError: On rank 0, when another rank could not start (names the rank and why).
            RuntimeError: On rank 0, when the ranks built different problems.
        """
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = (comm if comm is not None else MPI.COMM_WORLD).Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_main = self.rank == 0
        watchdog.configure(f"rank {self.rank} (pid {os.getpid()}) on host {socket.gethostname()}", abort_job)
        self.num_workers = self.size
        self.stop_requested = False
        self.compute_seconds = 0.0
        self._problem = problem
        self._closed = False
        self._in_round = False
        self._rows = np.empty(0, problem.wire_dtype)  # a worker's receive buffer, reused
        self._chunk = np.empty((0, 0), np.float32)  # a chunk of generated rows (distributed mode), reused
        self._synced: int | None = None  # rank 0: checksum of the replica state every rank holds
        self._splits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._status = MPI.Status()

        # Rank 0's seed, and whether rank 0 evaluates a share (HPCNE_MPI_COORDINATOR_EVALUATES=0: no).
        evaluates = os.environ.get("HPCNE_MPI_COORDINATOR_EVALUATES", "1") != "0"
        seed, evaluates = self.comm.bcast((problem.seed, evaluates) if self.is_main else None, root=0)
        self.coordinator_evaluates = self.size == 1 or evaluates
        own_error, report = self._start(int(seed), *node_placement(self.comm))
        reports: list[_StartReport] = self.comm.allgather(report)
        self.devices = [(r.host, r.device) for r in reports]
        if self.is_main:
            MPIRuntime._workers_joined = True  # from here on the workers are serving or released
        self._check_start(reports, own_error)
        if self.is_main:
            MPIRuntime._open.add(self)
        self._state_len = reports[0].state_length
        self._header = np.zeros(_HEAD + self._state_len)
        self._reduce = np.zeros(0)  # the Allreduce buffer, reused while the population size stays
        if not self.is_main:
            signals.settle()  # rank 0 decides when to stop; a worker leaving alone would hang the others
            try:
                self._serve()
                self.comm.Barrier()
            finally:
                self.comm.Free()
            raise WorkerReleased

    def _start(self, seed: int, node: str, local_rank: int) -> tuple[Exception | None, _StartReport]:
        """Adopt the seed and place the problem on ``node`` (its name for the rank map); report the outcome."""
        p = self._problem
        try:
            if not self.is_main:  # workers adopt rank 0's seed (it may have been drawn at random)
                p.seed = seed
                p._reseed()
            _, device = place_problem(p, local_rank, single_threaded=True)
            table = os.environ.get(NOISE_TABLE_ENV, "").strip()
            return None, _StartReport(node, device, p.solution_length, len(p._sync_buffer()), table, None)
        except Exception as err:
            failure = describe_exception(err)
            return err, _StartReport(failure.host, "?", -1, -1, "", failure.traceback)

    def _check_start(self, reports: list[_StartReport], own_error: Exception | None) -> None:
        """Stop every rank, with the reason on rank 0, unless all ranks started alike."""
        failed = [(r, rep) for r, rep in enumerate(reports) if rep.failure is not None]
        shapes = {(rep.solution_length, rep.state_length) for rep in reports}
        tables = {rep.noise_table for rep in reports}
        if not failed and len(shapes) == 1 and len(tables) == 1:
            return
        self.comm.Free()
        if not self.is_main:
            raise WorkerReleased
        if own_error is not None:
            raise own_error
        if failed:
            rank, rep = failed[0]
            others = f" (ranks {[r for r, _ in failed]} failed)" if len(failed) > 1 else ""
            raise WorkerError(rank, rep.host, None, rep.failure or "", kind="rank", stage=f"at start-up{others}")
        if len(tables) > 1:
            settings = [rep.noise_table or "unset" for rep in reports]
            raise RuntimeError(
                f"{NOISE_TABLE_ENV} differs between the ranks (per rank: {settings}); it decides the populations, "
                "so every rank must read the same noise table. Export one value (or none) in the job script "
                "before mpiexec/srun, so that every rank inherits it."
            )
        lengths = [rep.solution_length for rep in reports]
        states = [rep.state_length for rep in reports]
        raise RuntimeError(
            f"The ranks built different problems: parameter counts per rank {lengths}, synchronised "
            f"state lengths per rank {states}. Every rank must run the same script with the same arguments."
        )

    def describe(self) -> str:
        """The rank → host → device map."""
        role = "coordinates and evaluates a share" if self.coordinator_evaluates else "only coordinates"
        lines = [f"MPI, {self.size} ranks (rank 0 {role}):"]
        lines += [f"  rank {r}: {host} {dev}" for r, (host, dev) in enumerate(self.devices[:16])]
        if self.size > 16:
            lines.append(f"  ... and {self.size - 16} more ranks on {len({h for h, _ in self.devices})} hosts")
        return "\n".join(lines)

    # ---------------------------------------------------------------- rank 0
    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Evaluate the rows across all ranks (rank 0 only)."""
        dynamic = self._begin_round((CMD_EVAL, CMD_EVAL_DYNAMIC), eval_round, len(values))
        if dynamic:
            first, (local, failure) = 0, self._coordinate_dynamic(values, len(values), eval_round)
        else:
            first, local, failure = self._scatter(values, eval_round, len(values))
        return self._end_round(len(values), first, local, failure)

    def evaluate_sampled(self, sample: GaussianSample, popsize: int, replica: Replica | None = None) -> EvalResult:
        """Evaluate rows ``0..popsize-1`` of ``sample``; each rank generates the rows it evaluates (rank 0 only).

        With ``replica`` (the searcher that drew the sample), every rank draws the sample from its
        own copy of the searcher; without it, the sample's centre and stdev are broadcast.
        """
        eval_round = sample.stream.eval_round
        dynamic = self._begin_round((CMD_EVAL_SAMPLED, CMD_EVAL_SAMPLED_DYNAMIC), eval_round, popsize)
        self._share_sample(sample, replica)
        if dynamic:
            first, (local, failure) = 0, self._coordinate_dynamic(sample, popsize, eval_round)
        else:
            first, local, failure = self._evaluate_share(sample, eval_round, popsize)
        return self._end_round(popsize, first, local, failure)

    def update_distribution(
        self, replica: Replica, streams: Sequence[NoiseStream], weights: np.ndarray, exponents: tuple[int, int]
    ) -> None:
        """Every rank sums its share of the noise; the exact sums are Allreduced and every rank updates its copy.

        Rank 0 only; the worker ranks update the copy of the searcher they hold (``problem._replica``).
        """
        self._check_open()
        first = streams[0].eval_round
        if [s.eval_round for s in streams] != list(range(first, first + len(streams))):
            raise ValueError(
                f"The batches of a generation are consecutive rounds; got {[s.eval_round for s in streams]}."
            )
        self._in_round = True
        self._header[:_HEAD] = (CMD_NOISE_SUMS, first, len(weights))
        self.comm.Bcast(self._header, root=0)
        message = np.concatenate([weights, [*exponents, streams[0].symmetric, len(streams)]]).astype(np.float64)
        self.comm.Bcast(message, root=0)
        self._update_share(replica, message, first)
        self._synced = state_checksum(replica.replica_state())

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                "This MPI runtime was closed (by close() or after a worker failure); call problem.kill_actors() "
                "and the next evaluation starts a new one."
            )

    def _begin_round(self, commands: tuple[int, int], eval_round: int, n: int) -> bool:
        """Tell the workers what comes (static or dynamic ``commands``) with the frozen state; return dynamic."""
        self._check_open()
        p = self._problem
        dynamic = p.num_subbatches is not None or p.subbatch_size is not None
        self._in_round = True
        self._header[:_HEAD] = (commands[dynamic], eval_round, n)
        if self._state_len:
            self._header[_HEAD:] = p._sync_buffer()
        self.comm.Bcast(self._header, root=0)
        return dynamic

    def _end_round(self, n: int, first: int, local: EvalResult, failure: Failure | None) -> EvalResult:
        result = self._finish(n, first, local, failure)
        assert result is not None  # rank 0 raises on failure
        return result

    def _coordinate_dynamic(
        self, rows: np.ndarray | GaussianSample, n: int, eval_round: int
    ) -> tuple[EvalResult, Failure | None]:
        """Hand out pieces on request, evaluate pieces here between requests, merge in population order.

        ``rows`` are the population's rows (sent with each piece) or its sample (each rank
        generates a piece's rows itself).
        """
        p, MPI, status = self._problem, self._MPI, self._status
        todo = deque(pieces(n, self.size, p.num_subbatches, p.subbatch_size))
        fitness = np.full(n, np.nan)
        parts: dict[int, EvalResult] = {}
        failure: Failure | None = None
        working = sum(self._send_piece(worker, rows, todo) for worker in range(1, self.size))
        while todo or working:
            only_wait = not todo or not self.coordinator_evaluates  # nothing to evaluate here
            if working and (only_wait or self.comm.Iprobe(MPI.ANY_SOURCE, TAG_RESULT, status)):
                if only_wait:
                    self.comm.Probe(MPI.ANY_SOURCE, TAG_RESULT, status)
                source = status.Get_source()
                message = np.empty(status.Get_count(MPI.DOUBLE))
                self.comm.Recv(message, source=source, tag=TAG_RESULT)
                start, result = self._unpack_result(message)
                if result is None:
                    todo.clear()  # a rank failed: the round is lost, hand out no more work
                else:
                    parts[start] = result
                    fitness[start : start + len(result.fitness)] = result.fitness
                working -= 1
                working += self._send_piece(source, rows, todo)
                continue
            start, stop = todo.popleft()
            result = self._evaluate_rows(rows, start, stop, eval_round)
            if isinstance(result, Failure):
                failure = failure or result
                todo.clear()
            else:
                parts[start] = result
                fitness[start:stop] = result.fitness
        merged = EvalResult.merge([parts[s] for s in sorted(parts)])
        merged.fitness = fitness
        return merged, failure

    def _send_piece(self, worker: int, rows: np.ndarray | GaussianSample, todo: deque[tuple[int, int]]) -> int:
        """Send the next piece to ``worker`` (or 'no more work'); return 1 if a piece was sent.

        A piece of a sample travels as its index range only: the worker generates the rows.
        """
        if not todo:
            self.comm.Send(np.array([-1, 0], np.int64), dest=worker, tag=TAG_WORK)
            return 0
        start, stop = todo.popleft()
        self.comm.Send(np.array([start, stop], np.int64), dest=worker, tag=TAG_WORK)
        if isinstance(rows, np.ndarray):
            self.comm.Send(rows[start:stop], dest=worker, tag=TAG_WORK)
        return 1

    def _evaluate_rows(
        self, rows: np.ndarray | GaussianSample | Failure, start: int, stop: int, eval_round: int
    ) -> EvalResult | Failure:
        """Evaluate solutions ``start..stop-1`` here; a sample's rows are generated a chunk at a time.

        A :class:`Failure` in place of the rows (a worker that could not draw the sample) fails the piece.
        """
        if isinstance(rows, Failure):
            return rows
        if isinstance(rows, np.ndarray):
            return evaluate_piece(self._problem, rows[start:stop], start, eval_round)
        results = []
        chunk = rows.chunk_rows()
        if self._chunk.shape != (chunk, rows.stream.length) or self._chunk.dtype != rows.center.dtype:
            self._chunk = np.empty((chunk, rows.stream.length), rows.center.dtype)
        for first in range(start, stop, chunk):
            last = min(first + chunk, stop)
            values = rows.rows(first, last, self._chunk).astype(self._problem.wire_dtype, copy=False)
            result = evaluate_piece(self._problem, values, first, eval_round)
            if isinstance(result, Failure):
                return result
            results.append(result)
        return EvalResult.merge(results) if results else EvalResult(np.empty(0))

    def _share_sample(self, sample: GaussianSample | None, replica: Replica | None = None) -> GaussianSample | Failure:
        """Give every rank the round's sample: from its own copy of the searcher, or broadcast from rank 0.

        With a replicated searcher, rank 0 sends its state's checksum, and its state only when that
        changed other than by :meth:`update_distribution` (the first round, a restored checkpoint,
        a change by the user's code). A worker whose copy differs from rank 0's has drifted: its
        round fails (rank 0 raises :class:`WorkerError` naming it) before any row is generated.
        On a worker, the returned :class:`Failure` stands for the sample in that case.
        """
        width = self._problem.solution_length
        header = np.zeros(3)  # [how, symmetric, checksum]
        if self.is_main:
            assert sample is not None
            checksum = 0 if replica is None else state_checksum(replica.replica_state())
            if replica is None:
                how = _SAMPLE_SENT
            else:  # the state travels only when it changed other than by update_distribution
                how = _SAMPLE_REPLICA if checksum == self._synced else _SAMPLE_REPLICA_STATE
            header[:] = how, sample.stream.symmetric, checksum
        self.comm.Bcast(header, root=0)
        how, symmetric, checksum = int(header[0]), bool(header[1]), int(header[2])
        if how == _SAMPLE_SENT:
            message = np.empty(2 * width, self._problem.wire_dtype)
            if sample is not None:
                message[:width], message[width:] = sample.center, sample.stdev
            self.comm.Bcast(message, root=0)
            if sample is not None:
                return sample
            stream = NoiseStream(self._problem.seed, int(self._header[1]), width, symmetric)
            return GaussianSample(stream, message[:width], message[width:])
        state = None
        if how == _SAMPLE_REPLICA_STATE:  # a nested dict of O(D) tensors, pickled: rare (first round, restores)
            state = self.comm.bcast(replica.replica_state() if replica is not None else None, root=0)
        if sample is not None:
            self._synced = checksum
            return sample
        stream = NoiseStream(self._problem.seed, int(self._header[1]), width, symmetric)
        return self._replica_sample(state, checksum, stream)

    def _replica_sample(
        self, state: dict[str, Any] | None, checksum: int, stream: NoiseStream
    ) -> GaussianSample | Failure:
        """A worker's sample from its copy of the searcher (after adopting rank 0's ``state``, if sent), or why not."""
        replica = self._problem._replica
        try:
            if replica is None:
                raise RuntimeError(
                    f"rank {self.rank} holds no distributed searcher: in the distributed mode every rank builds the "
                    "same searcher (the same script on every rank), and each updates its own copy."
                )
            if state is not None:
                replica.load_replica_state(state)
            mine = state_checksum(replica.replica_state())
            if mine != checksum:
                raise RuntimeError(
                    f"the searcher state on rank {self.rank} differs from rank 0's before evaluation round "
                    f"{stream.eval_round} (CRC-32 {mine:08x}, rank 0 {checksum:08x}): the ranks' copies of the "
                    "distribution drifted apart (nodes whose CPUs or libraries round differently), or code changed "
                    "the searcher on some ranks only. Run on nodes of one type with the same software, or train "
                    "centralized (distributed = false), which keeps the state on rank 0 only."
                )
        except Exception as err:
            return describe_exception(err)
        return replica.replica_sample(stream)

    def _evaluate_share(
        self, sample: GaussianSample | Failure, eval_round: int, n: int
    ) -> tuple[int, EvalResult, Failure | None]:
        """Static split of a sample: each rank generates and evaluates its contiguous share."""
        counts, starts = self._split(n)
        first, count = int(starts[self.rank]), int(counts[self.rank])
        result = self._evaluate_rows(sample, first, first + count, eval_round)
        if isinstance(result, Failure):
            return first, EvalResult(np.full(count, np.nan)), result
        return first, result, None

    def _update_share(self, replica: Replica | None, message: np.ndarray, first_round: int) -> None:
        """This rank's units of the generation's noise sums, Allreduced exactly (modulo 2**64); update the copy."""
        weights, exponents = message[:-4], (int(message[-4]), int(message[-3]))
        symmetric, batches = bool(message[-2]), int(message[-1])
        length = self._problem.solution_length
        streams = [NoiseStream(self._problem.seed, first_round + b, length, symmetric) for b in range(batches)]
        sums = np.concatenate(generation_sums(streams, weights, exponents, (self.rank, self.size)))
        self.comm.Allreduce(self._MPI.IN_PLACE, sums, op=self._MPI.SUM)
        self._in_round = False
        if replica is None:  # a worker that held no searcher failed the round that drew this generation
            raise RuntimeError(f"rank {self.rank} holds no distributed searcher to update.")
        replica.apply_noise_sums((sums[:length], sums[length:]), exponents, float(weights.sum()))

    def _unpack_result(self, message: np.ndarray) -> tuple[int, EvalResult | None]:
        """Read a worker's reply: ``(start, result)``, with None for a failed piece."""
        start, failed, episodes, interactions, has_delta = (int(v) for v in message[:_RESULT_HEAD])
        if failed:
            return start, None
        stats_end = _RESULT_HEAD + self._state_len
        delta = message[_RESULT_HEAD:stats_end] if has_delta else None
        return start, EvalResult(message[stats_end:], episodes, interactions, delta)

    # -------------------------------------------------------------- all ranks
    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Row counts and first rows of the static split of ``n`` rows (cached per ``n``)."""
        if n not in self._splits:
            if self.coordinator_evaluates:
                counts = contiguous_counts(n, self.size)
            else:
                counts = np.concatenate([[0], contiguous_counts(n, self.size - 1)])
            self._splits[n] = counts, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return self._splits[n]

    def _receive_rows(self, count: int) -> np.ndarray:
        """A ``(count, solution_length)`` view of the reused receive buffer."""
        width = self._problem.solution_length
        if self._rows.size < count * width:
            self._rows = np.empty(count * width, self._problem.wire_dtype)
        return self._rows[: count * width].reshape(count, width)

    def _scatter(self, values: np.ndarray | None, eval_round: int, n: int) -> tuple[int, EvalResult, Failure | None]:
        """Static split: one contiguous piece per rank (rank 0's never leaves its memory); evaluate it."""
        width = self._problem.solution_length
        counts, starts = self._split(n)
        first, count = int(starts[self.rank]), int(counts[self.rank])
        if self.is_main:
            assert values is not None
            self.comm.Scatterv([values, (counts * width, starts * width)], self._MPI.IN_PLACE, root=0)
            mine = values[first : first + count]
        else:
            mine = self._receive_rows(count)
            self.comm.Scatterv(None, mine, root=0)
        result = evaluate_piece(self._problem, mine, first, eval_round)
        if isinstance(result, Failure):
            return first, EvalResult(np.full(count, np.nan)), result
        return first, result, None

    def _finish(self, n: int, first: int, local: EvalResult, failure: Failure | None) -> EvalResult | None:
        """Allreduce fitnesses and side effects; on failure raise on rank 0 (the other ranks get None)."""
        tail = n + self._state_len
        if len(self._reduce) != tail + _TAIL + self.size:
            self._reduce = np.empty(tail + _TAIL + self.size)
        buffer = self._reduce
        buffer[:] = 0.0
        buffer[first : first + len(local.fitness)] = local.fitness
        stats = buffer[n:tail]
        if local.obs_delta is not None and failure is None:
            stats[:] = local.obs_delta
        buffer[tail : tail + _TAIL] = (
            local.episodes,
            local.interactions,
            local.obs_delta is not None,
            failure is not None,
            signals.stop_requested(),
        )
        seconds = buffer[tail + _TAIL :]
        seconds[self.rank] = local.seconds
        self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
        episodes, interactions, deltas, failures, stops = buffer[tail : tail + _TAIL]
        self.stop_requested = bool(stops > 0)
        self.compute_seconds = float(seconds.max())
        if failures:
            reports = self.comm.gather(failure, root=0)
            self._in_round = False
            if self.is_main:
                rank, first_failure = next((r, f) for r, f in enumerate(reports) if f is not None)
                raise WorkerError(
                    rank, first_failure.host, first_failure.solution_index, first_failure.traceback, kind="rank"
                )
            return None
        self._in_round = False
        delta = stats.copy() if deltas else None
        return EvalResult(buffer[:n].copy(), int(episodes), int(interactions), delta, float(seconds.sum()))

    # ---------------------------------------------------------------- workers
    def _serve(self) -> None:
        """Worker ranks: follow rank 0's commands until it says stop."""
        p = self._problem
        while True:
            self.comm.Bcast(self._header, root=0)
            command, eval_round, n = (int(v) for v in self._header[:_HEAD])
            if command == CMD_STOP:
                return
            self._in_round = True
            if command == CMD_NOISE_SUMS:
                message = np.empty(n + 4)
                self.comm.Bcast(message, root=0)
                self._update_share(p._replica, message, eval_round)
                continue
            if self._state_len:
                p._load_sync_buffer(self._header[_HEAD:].copy())
            sample = self._share_sample(None) if command in (CMD_EVAL_SAMPLED, CMD_EVAL_SAMPLED_DYNAMIC) else None
            if command == CMD_EVAL:
                first, local, failure = self._scatter(None, eval_round, n)
            elif command == CMD_EVAL_SAMPLED:
                assert sample is not None
                first, local, failure = self._evaluate_share(sample, eval_round, n)
            else:  # the pieces' fitnesses and side effects went to rank 0
                failure, seconds = self._work_dynamic(eval_round, sample)
                first, local = 0, EvalResult(np.empty(0), seconds=seconds)
            total = self._finish(n, first, local, failure)
            if total is not None:
                p._eval_round = eval_round + 1
                p._apply_eval_result(total)

    def _work_dynamic(self, eval_round: int, sample: GaussianSample | Failure | None) -> tuple[Failure | None, float]:
        """Evaluate the pieces rank 0 sends (or their index ranges in ``sample``) until it sends 'no more work'.

        Returns:
            The first failure (or None) and the seconds spent evaluating.
        """
        span = np.empty(2, np.int64)
        failure: Failure | None = None
        seconds = 0.0
        while True:
            self.comm.Recv(span, source=0, tag=TAG_WORK)
            start, stop = int(span[0]), int(span[1])
            if start < 0:
                return failure, seconds
            if sample is None:
                rows = self._receive_rows(stop - start)
                self.comm.Recv(rows, source=0, tag=TAG_WORK)
                result = evaluate_piece(self._problem, rows, start, eval_round)
            else:
                result = self._evaluate_rows(sample, start, stop, eval_round)
            message = np.zeros(_RESULT_HEAD + self._state_len + (stop - start))
            message[0] = start
            if isinstance(result, Failure):
                failure = failure or result
                message[1] = 1
            else:
                message[2:4] = result.episodes, result.interactions
                if result.obs_delta is not None:
                    message[4] = 1
                    message[_RESULT_HEAD : _RESULT_HEAD + self._state_len] = result.obs_delta
                message[_RESULT_HEAD + self._state_len :] = result.fitness
                seconds += result.seconds
            self.comm.Send(message, dest=0, tag=TAG_RESULT)

    # -------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Release the worker ranks (rank 0); they raise :class:`WorkerReleased`.

        If rank 0 left a round half-way (an exception escaped its own code while the other ranks
        wait in a collective), there is no clean way out: the job is aborted.
        """
        if self._closed or not self.is_main:
            return
        self._closed = True
        atexit.unregister(self.close)
        MPIRuntime._open.discard(self)
        if self._MPI.Is_finalized():
            return
        if self._in_round:
            sys.stderr.write("hpcne: rank 0 left an evaluation round unfinished; aborting the MPI job.\n")
            abort_job(1)
        self._header[:_HEAD] = (CMD_STOP, 0, 0)
        self.comm.Bcast(self._header, root=0)
        self.comm.Barrier()
        self.comm.Free()
