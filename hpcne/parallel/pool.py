"""A local process pool: forked workers, each with its own copy of the problem and environments."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import socket
import sys
import warnings
from collections import deque
from multiprocessing.connection import Connection, wait

import numpy as np

from hpcne import watchdog
from hpcne.core import EvalResult, Problem
from hpcne.parallel import signals
from hpcne.parallel.devices import choose_device
from hpcne.parallel.errors import WorkerError
from hpcne.parallel.runtime import place_problem
from hpcne.parallel.sampled import LocalSampling
from hpcne.parallel.split import pieces
from hpcne.parallel.worker import Failure, describe_exception, evaluate_piece

__all__ = ["PoolRuntime", "WorkersCapped", "cap_workers", "cpu_count"]


def _detach() -> None:
    """Make this worker independent of the terminal but not of its coordinator.

    The coordinator decides when to stop, so a Ctrl-C or a SLURM signal must not kill a worker
    mid-piece. A session of its own also gives the worker its own group in Linux's autogroup
    scheduler, as an MPI rank has under ``mpiexec``; otherwise all workers of a pool share the
    CPU time of one process when the machine is busy. The worker dies with its coordinator.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    os.setsid()
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _serve(problem: Problem, conn: Connection, index: int) -> None:
    """Worker loop: receive pieces, evaluate them, send results back, until told to stop."""
    _detach()
    watchdog.configure(f"pool worker {index} (pid {os.getpid()}) on host {socket.gethostname()}")
    try:
        problem._on_worker_start()
        place_problem(problem, index, single_threaded=True)
    except Exception as err:  # reported as the answer to the first piece
        failure = describe_exception(err)
        conn.send(("error", failure.host, None, failure.traceback, "at start-up"))
        return
    dtype, width = problem.wire_dtype, problem.solution_length
    buffer = bytearray()  # rows arrive here, reused between pieces
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the coordinator is gone
            return
        if message[0] == "stop":
            return
        _, eval_round, start, rows, sync = message
        size = rows * width * dtype.itemsize
        if len(buffer) < size:
            buffer = bytearray(size)
        conn.recv_bytes_into(buffer)
        values = np.frombuffer(buffer, dtype=dtype, count=rows * width).reshape(rows, width)
        problem._load_sync_buffer(sync)
        result = evaluate_piece(problem, values, start, eval_round)
        if isinstance(result, Failure):
            conn.send(("error", result.host, result.solution_index, result.traceback, None))
        else:
            conn.send(("ok", result.fitness, result.episodes, result.interactions, result.obs_delta, result.seconds))


class PoolRuntime(LocalSampling):
    """Evaluates on ``num_workers`` forked processes; the calling process only coordinates."""

    is_main = True

    def __init__(self, problem: Problem, num_workers: int) -> None:
        """Fork the workers.

        Each worker uses one torch thread (``actor_config={"num_threads": n}`` changes it) and,
        when the problem asks for GPUs, the visible GPUs round-robin by worker index.

        Args:
            problem: The problem; each worker gets a copy through ``fork`` (nothing is pickled).
            num_workers: How many processes.
        """
        if num_workers < 1:
            raise ValueError(f"A process pool needs at least one worker; got {num_workers}.")
        self._problem = problem
        self.num_workers = num_workers
        self.stop_requested = False
        self.compute_seconds = 0.0
        ctx = mp.get_context("fork")
        self._conns: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        for index in range(num_workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(problem, child, index), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.host = socket.gethostname()
        self.devices = [
            str(choose_device(w, problem.actor_config, problem.num_gpus_per_actor, problem.device))
            for w in range(num_workers)
        ]

    def describe(self) -> str:
        """One line on the layout."""
        devices = ", ".join(sorted(set(self.devices)))
        pids = [p.pid for p in self._procs]
        return f"process pool, {self.num_workers} workers on {self.host} ({devices}; pids {pids})"

    def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
        """Hand out pieces to idle workers until all are evaluated; merge in piece order.

        Raises:
            WorkerError: A worker raised or died; all workers are stopped at once.
        """
        if not self._procs:
            raise RuntimeError(
                "This process pool was closed (by close() or after a worker failure); call problem.kill_actors() "
                "and the next evaluation starts a new one."
            )
        p = self._problem
        todo = deque(enumerate(pieces(len(values), self.num_workers, p.num_subbatches, p.subbatch_size)))
        sync = p._sync_buffer()
        results: dict[int, EvalResult] = {}
        busy: dict[int, tuple[int, int]] = {}  # worker -> (piece number, start row)
        idle = deque(range(self.num_workers))
        work = [0.0] * self.num_workers  # evaluation seconds per worker
        while todo or busy:
            while todo and idle:
                w = idle.popleft()
                number, (start, stop) = todo.popleft()
                try:
                    self._conns[w].send(("eval", eval_round, start, stop - start, sync))
                    self._conns[w].send_bytes(values[start:stop])
                except OSError:  # the worker is gone; its last words may still be in the pipe
                    raise self._gone(w, start) from None
                busy[w] = (number, start)
            ready = wait([self._conns[w] for w in busy] + [self._procs[w].sentinel for w in busy])
            for w in list(busy):
                if self._conns[w] in ready:
                    message = self._receive(w, busy[w][1])
                elif self._procs[w].sentinel in ready:
                    raise self._died(w, busy[w][1])
                else:
                    continue
                if message[0] == "error":
                    raise self._reported(w, message)
                _, fitness, episodes, interactions, delta, seconds = message
                results[busy.pop(w)[0]] = EvalResult(fitness, episodes, interactions, delta, seconds)
                work[w] += seconds
                idle.append(w)
        self.compute_seconds = max(work)
        self.stop_requested = signals.stop_requested()
        return EvalResult.merge([results[i] for i in sorted(results)])

    def _receive(self, w: int, start: int) -> tuple:
        try:
            return self._conns[w].recv()
        except (EOFError, ConnectionError, OSError):
            raise self._died(w, start) from None

    def _reported(self, w: int, message: tuple) -> WorkerError:
        """Stop the pool after worker ``w`` reported an error; return that error."""
        _, host, index, text, stage = message
        self.close(force=True)
        return WorkerError(w, host, index, text, kind="pool worker", stage=stage)

    def _gone(self, w: int, start: int) -> WorkerError:
        """The error for a worker that could not be sent a piece: what it reported, else its death."""
        conn = self._conns[w]
        with contextlib.suppress(EOFError, OSError):
            if conn.poll(0):
                message = conn.recv()
                if message[0] == "error":
                    return self._reported(w, message)
        return self._died(w, start)

    def _died(self, w: int, start: int) -> WorkerError:
        """Stop the pool after worker ``w`` died; return the error that says so."""
        proc = self._procs[w]
        proc.join(timeout=5)
        code = proc.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        if code == watchdog.EXIT_HUNG:
            how += " (its hang detection: no progress for too long; its report and stack are on stderr above)"
        self.close(force=True)
        return WorkerError(
            w,
            self.host,
            None,
            f"Worker process {proc.pid} {how} while evaluating the piece starting at solution {start}.",
            kind="pool worker",
        )

    def close(self, *, force: bool = False) -> None:
        """Stop the workers: politely (each finishes its piece), or with ``force`` at once."""
        atexit.unregister(self.close)
        if not force:
            for conn in self._conns:
                with contextlib.suppress(BrokenPipeError, OSError):
                    conn.send(("stop",))
        for proc in self._procs:
            if not force:
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []


class WorkersCapped(UserWarning):
    """More pool workers were asked for than this process has CPUs; the pool was made smaller."""


def cap_workers(workers: int) -> int:
    """``workers``, or the CPUs this process may use when that is fewer (with a :class:`WorkersCapped` warning)."""
    cpus = cpu_count()
    if workers <= cpus:
        return workers
    warnings.warn(
        f"{workers} pool workers were asked for, but this process may use {cpus} CPUs: starting {cpus}. More "
        "workers than CPUs only slow each other down (and thousands exhaust the machine); to spread a run over "
        "more CPUs, start it on more nodes under MPI.",
        WorkersCapped,
        stacklevel=3,
    )
    return cpus


def cpu_count() -> int:
    """The CPUs this process may use (respects affinity masks set by SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
