"""Communication volume of hpcne's MPI runtime per generation and rank, measured, with a model to 1,000 ranks.

The measuring process replaces ``mpi4py.MPI.COMM_WORLD`` by a proxy before hpcne starts its
runtime; the runtime's ``Dup`` of it is a :class:`CountingComm`, which records every call with
the bytes it hands to MPI or takes from it (buffer calls: the array's bytes; pickle-based calls:
the pickle's length). hpcne itself is unchanged. Per rank and generation that gives:

- ``Bcast``: the root sends the header, the others receive it;
- ``Scatterv``: rank 0 sends the other ranks' rows (its own stay in place), each worker receives
  its piece;
- ``Allreduce``: every rank contributes its buffer and receives the sum (counted as sent and
  received; how many bytes cross the network depends on MPI's algorithm, see the model);
- ``Reduce`` (the distributed mode's noise sums): a worker sends its buffer, the root receives one.

The problems are a near-zero-cost ``Problem`` (any parameter count) and, for the synchronised
observation statistics, ``GymNE`` on CartPole-v1 with ``observation_normalization=True``.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import LoadTracker, markdown_table, median, mpi_command, run_json, shown, write_csv

__all__ = ["CountingComm", "comm_volume", "model_bytes"]

F32, F64 = 4, 8
HEAD, TAIL = 3, 5  # hpcne/parallel/mpi.py: round header [command, round, n]; reduced counters


def _nbytes(buf: Any) -> int:
    """Bytes in an mpi4py buffer argument: an array, ``[array, ...]`` or ``IN_PLACE``/None (0)."""
    if isinstance(buf, (list, tuple)) and buf:
        buf = buf[0]
    return int(buf.nbytes) if isinstance(buf, np.ndarray) else 0


class CountingComm:
    """A communicator proxy that records ``(call, bytes sent, bytes received)`` for every call it forwards."""

    def __init__(self, comm: Any, events: list[tuple[str, int, int]]) -> None:
        self._comm = comm
        self.events = events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def _log(self, call: str, sent: int, received: int) -> None:
        self.events.append((call, sent, received))

    def Dup(self) -> CountingComm:
        """A duplicate that counts into the same event list."""
        return CountingComm(self._comm.Dup(), self.events)

    def Bcast(self, buf: Any, root: int = 0) -> None:
        size = _nbytes(buf)
        self._log("Bcast", size if self._comm.Get_rank() == root else 0, 0 if self._comm.Get_rank() == root else size)
        self._comm.Bcast(buf, root=root)

    def Scatterv(self, sendbuf: Any, recvbuf: Any, root: int = 0) -> None:
        if self._comm.Get_rank() == root:
            array, (counts, _) = sendbuf  # counts in elements; the root's own piece is not sent
            self._log("Scatterv", (int(np.sum(counts)) - int(counts[root])) * array.itemsize, _nbytes(recvbuf))
        else:
            self._log("Scatterv", 0, _nbytes(recvbuf))
        self._comm.Scatterv(sendbuf, recvbuf, root=root)

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: Any = None) -> None:
        size = _nbytes(recvbuf)
        self._log("Allreduce", size, size)
        self._comm.Allreduce(sendbuf, recvbuf, op=op)

    def Reduce(self, sendbuf: Any, recvbuf: Any, op: Any = None, root: int = 0) -> None:
        if self._comm.Get_rank() == root:
            self._log("Reduce", 0, _nbytes(recvbuf))
        else:
            self._log("Reduce", _nbytes(sendbuf), 0)
        self._comm.Reduce(sendbuf, recvbuf, op=op, root=root)

    def Send(self, buf: Any, *args: Any, **kwargs: Any) -> None:
        self._log("Send", _nbytes(buf), 0)
        self._comm.Send(buf, *args, **kwargs)

    def Recv(self, buf: Any, *args: Any, **kwargs: Any) -> None:
        self._log("Recv", 0, _nbytes(buf))
        self._comm.Recv(buf, *args, **kwargs)

    def Barrier(self) -> None:
        self._log("Barrier", 0, 0)
        self._comm.Barrier()

    def _pickled(self, call: str, obj: Any, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self._comm, call)(obj, *args, **kwargs)
        self._log(call, len(pickle.dumps(obj)), len(pickle.dumps(result)))
        return result

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """Pickle-based broadcast (start-up), counted."""
        return self._pickled("bcast", obj, root=root)

    def allgather(self, obj: Any) -> Any:
        """Pickle-based allgather (start-up), counted."""
        return self._pickled("allgather", obj)

    def gather(self, obj: Any, root: int = 0) -> Any:
        """Pickle-based gather (failure reports), counted."""
        return self._pickled("gather", obj, root=root)


def _rounds(events: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """Split a rank's events into start-up and rounds: each round begins with the header ``Bcast``."""
    segments: list[list[tuple[str, int, int]]] = [[]]
    for event in events:
        if event[0] == "Bcast":
            segments.append([])
        segments[-1].append(event)
    return segments


def measure(cases: list[tuple[str, int, int]], rounds: int, warmup: int) -> list[dict[str, Any]] | None:
    """Run on every rank: for each ``(kind, popsize, params)`` case count the bytes per round and rank."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    events: list[tuple[str, int, int]] = []
    MPI.COMM_WORLD = CountingComm(world, events)  # hpcne's runtime duplicates this one
    import torch

    from hpcne.core import Problem
    from hpcne.neuroevolution import GymNE
    from hpcne.parallel import WorkerReleased

    results: list[dict[str, Any]] = []
    for kind, popsize, params in cases:
        events.clear()
        if kind == "gymne":
            problem: Any = GymNE(
                "CartPole-v1",
                f"Linear(obs_length, {params}) >> Linear({params}, act_length)",
                observation_normalization=True,
                num_actors=None,
                seed=0,
            )
        else:
            problem = Problem("max", lambda x: x[:, 0], solution_length=params, vectorized=True, seed=0)
        values = torch.randn(popsize, problem.solution_length, generator=torch.Generator().manual_seed(0))
        try:
            for _ in range(warmup + rounds):
                problem.evaluate_values(values)
        except WorkerReleased:
            pass
        finally:
            problem.kill_actors()
        segments = _rounds(list(events))
        per_round: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for segment in segments[1 + warmup : 1 + warmup + rounds]:
            for call, sent, received in segment:
                per_round[call][0] += sent
                per_round[call][1] += received
        startup = segments[0]
        mine = {
            "kind": kind,
            "popsize": popsize,
            "params": int(problem.solution_length),
            "state_length": len(problem._sync_buffer()),
            "startup_sent": sum(e[1] for e in startup),
            "startup_received": sum(e[2] for e in startup),
            **{f"{call}_sent": s / rounds for call, (s, _) in per_round.items()},
            **{f"{call}_received": r / rounds for call, (_, r) in per_round.items()},
        }
        everyone = world.gather(mine, root=0)
        if world.Get_rank() == 0:
            for rank, row in enumerate(everyone):
                results.append({"ranks": world.Get_size(), "rank": rank, **row})
    return results if world.Get_rank() == 0 else None


def model_bytes(ranks: int, popsize: int, params: int, state: int) -> dict[str, float]:
    """Bytes per generation in hpcne's static split, at the API and on the wire (MPICH's algorithms).

    API level (what the counter measures): rank 0 sends the header ``8(3+S)``, the rows of the
    other ranks ``4·D·(n − n0)`` (``n0 = ⌈n/p⌉`` stay in place) and its Allreduce buffer
    ``8(n+S+5+p)`` (fitnesses, statistics, 5 counters, one compute time per rank); a worker
    receives the header and ``4·D·n/p`` and contributes the same Allreduce buffer.

    Wire: the header goes down a binomial tree (rank 0 sends it ``⌈log2 p⌉`` times, a worker
    forwards it less than once on average: left out); ``Scatterv`` is linear from rank 0; an
    Allreduce of ``B`` bytes costs each rank ``B·⌈log2 p⌉`` (recursive doubling, ``B`` ≤ 2 KiB)
    or ``≈ 2B(p−1)/p`` (Rabenseifner: reduce-scatter then allgather), both sent and received.
    """
    p, n, d, s = ranks, popsize, params, state
    share = math.ceil(n / p)
    header, reduce = F64 * (HEAD + s), F64 * (n + s + TAIL + p)
    log_p = math.ceil(math.log2(p)) if p > 1 else 0
    allreduce_wire = reduce * log_p if reduce <= 2048 else 2 * reduce * (p - 1) / p
    return {
        "rank0_api_sent": header + F32 * d * (n - share) + reduce,
        "worker_api_received": header + F32 * d * (n // p) + reduce,
        "rank0_wire_sent": header * log_p + F32 * d * (n - share) + allreduce_wire,
        "worker_wire_sent": allreduce_wire,
        "worker_wire_received": header + F32 * d * (n // p) + allreduce_wire,
    }


def _fmt(nbytes: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:,.1f} {unit}"
    return f"{nbytes:,.0f} B"


def default_cases(quick: bool) -> list[tuple[str, int, int]]:
    """``(kind, popsize, params)``: a grid of the cheap problem, and GymNE with observation statistics."""
    popsizes, params = ([20, 200], [100, 10_000]) if quick else ([20, 200, 1000], [100, 1_000, 10_000])
    grid = [("problem", n, d) for n in popsizes for d in params]
    if not quick:
        grid.append(("problem", 20, 100_000))
    return [*grid, ("gymne", 20, 16)]


def comm_volume(out: Path, *, ranks: list[int], quick: bool, rounds: int = 5, warmup: int = 2) -> str:
    """Measure every case on each number of ranks; write the CSV; return the Markdown tables and the model."""
    load = LoadTracker()
    cases = default_cases(quick)
    spec = json.dumps(cases)
    rows: list[dict[str, Any]] = []
    for p in ranks:
        args = ["measure", "--cases", spec, "--rounds", str(rounds), "--warmup", str(warmup)]
        rows += run_json(mpi_command(p, "benchmarks.commvolume", args))["rows"]
        load.sample()
    for row in rows:
        row["total_sent"] = sum(v for k, v in row.items() if k.endswith("_sent") and not k.startswith("startup"))
        row["total_received"] = sum(
            v for k, v in row.items() if k.endswith("_received") and not k.startswith("startup")
        )
    write_csv(out, rows)
    table = []
    for p in ranks:
        for kind, n, d in dict.fromkeys((r["kind"], r["popsize"], r["params"]) for r in rows if r["ranks"] == p):
            mine = [r for r in rows if (r["ranks"], r["kind"], r["popsize"], r["params"]) == (p, kind, n, d)]
            zero, workers = mine[0], mine[1:]
            model = model_bytes(p, n, d, zero["state_length"])
            table.append(
                [
                    p,
                    "GymNE CartPole, obs. norm." if kind == "gymne" else "Problem",
                    n,
                    f"{d:,}",
                    zero["state_length"],
                    _fmt(zero.get("Bcast_sent", 0)),
                    _fmt(zero.get("Scatterv_sent", 0)),
                    _fmt(zero.get("Allreduce_sent", 0)),
                    _fmt(zero["total_sent"]),
                    _fmt(median(w["total_received"] for w in workers)),
                    _fmt(median(w["total_sent"] for w in workers)),
                    "yes" if abs(zero["total_sent"] - model["rank0_api_sent"]) < 1 else "no",
                ]
            )
    headers = [
        "ranks p",
        "problem",
        "popsize n",
        "params D",
        "state S",
        "rank 0: Bcast",
        "rank 0: Scatterv",
        "rank 0: Allreduce",
        "rank 0 sends",
        "a worker receives",
        "a worker sends",
        "= model",
    ]
    measured = (
        f"**Measured**, bytes handed to MPI per generation (mean of {rounds} rounds after {warmup} warm-up; "
        f"start-up excluded)\n\n" + markdown_table(headers, table)
    )
    return measured + "\n" + model_table() + f"\n({load.describe()}; all rows: {shown(out)})\n"


def model_table(params: int = 10_000, per_rank: int = 10, state: int = 2 * 17 + 1) -> str:
    """The model's per-generation bytes from 2 to 1,000 ranks (popsize growing with the ranks)."""
    table = []
    for p in (2, 16, 128, 1000):
        n = per_rank * p
        m = model_bytes(p, n, params, state)
        table.append(
            [
                f"{p:,}",
                f"{n:,}",
                _fmt(m["rank0_api_sent"]),
                _fmt(m["rank0_wire_sent"]),
                _fmt(m["worker_wire_received"]),
                _fmt(m["worker_wire_sent"]),
                f"{m['rank0_wire_sent'] / 12.5e9 * 1000:,.2f} ms",
            ]
        )
    headers = [
        "ranks p",
        "popsize n",
        "rank 0 sends (API)",
        "rank 0 sends (wire)",
        "a worker receives (wire)",
        "a worker sends (wire)",
        "rank 0 at 12.5 GB/s (100 Gbit/s)",
    ]
    return (
        f"**Model**, D = {params:,} parameters, {per_rank} solutions per rank, S = {state} (observation statistics "
        "of a 17-dimensional observation, e.g. HalfCheetah)\n\n" + markdown_table(headers, table)
    )


def main() -> None:
    """``measure`` (one MPI job; prints a JSON line on rank 0)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.commvolume")
    parser.add_argument("what", choices=["measure"])
    parser.add_argument("--cases", required=True, help="JSON list of [kind, popsize, params]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    cases = [(str(k), int(n), int(d)) for k, n, d in json.loads(args.cases)]
    rows = measure(cases, args.rounds, args.warmup)
    if rows is not None:
        print(json.dumps({"rows": rows}), flush=True)


if __name__ == "__main__":
    main()
