"""Centralized vs distributed PGPE on large networks: time split, bytes per rank, peak RSS, and a model.

Each case is one job (``mpiexec -n p``, or a plain process for one rank) that trains PGPE on
Pendulum-v1 with ``Linear(3, h) >> Tanh() >> Linear(h, h) >> Tanh() >> Linear(h, 1)`` (``h`` chosen
for ``D`` parameters), 5-step episodes, for a warm-up generation and timed generations. The job
counts the bytes every rank hands to MPI (the :class:`~benchmarks.commvolume.CountingComm` proxy)
and reports each rank's peak RSS. A generation's time splits into evaluation (the busiest rank's
rollouts), communication (the rest of the evaluation round) and update (sampling on rank 0, the
noise sums and the optimizer step: everything else).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path
from typing import Any

from benchmarks.common import LoadTracker, markdown_table, mpi_command, run_json, shown, write_csv
from benchmarks.commvolume import F32, F64, HEAD, TAIL, CountingComm, _fmt

__all__ = ["model_bytes", "per_solution_costs", "scale"]

# Rank 0 holds popsize x D float32 values (and the noise) in the centralized mode, and so does a single
# process in either mode (the serial runtime generates every row where it evaluates): skip what does not fit.
CENTRAL_LIMIT_BYTES = 4e9


def hidden_for(params: int) -> int:
    """The hidden width ``h`` whose Pendulum net has about ``params`` parameters (``h**2 + 6h + 1``)."""
    return max(1, round(-3 + math.sqrt(8 + params)))


def measure(
    params: int, popsize: int, distributed: bool, generations: int, episode_length: int = 5
) -> dict[str, Any] | None:
    """Run on every rank: one case; rank 0 returns the row."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    events: list[tuple[str, int, int]] = []
    MPI.COMM_WORLD = CountingComm(world, events)  # hpcne's runtime duplicates this one
    from hpcne.algorithms import PGPE
    from hpcne.neuroevolution import GymNE
    from hpcne.parallel import WorkerReleased

    h = hidden_for(params)
    problem = GymNE(
        "Pendulum-v1",
        f"Linear(obs_length, {h}) >> Tanh() >> Linear({h}, {h}) >> Tanh() >> Linear({h}, act_length)",
        episode_length=episode_length,
        observation_normalization=False,
        num_actors=None,
        seed=1,
    )
    searcher = PGPE(
        problem,
        popsize=popsize,
        center_learning_rate=0.01,
        stdev_learning_rate=0.1,
        stdev_init=0.01,
        distributed=distributed,
    )
    timed: list[dict[str, float]] = []
    startup = 0
    try:
        for generation in range(1 + generations):
            problem.runtime  # noqa: B018 -- start the runtime (the workers serve from here)
            startup = startup or len(events)
            before = problem.eval_seconds, time.perf_counter()
            searcher.step()
            wall = time.perf_counter() - before[1]
            evaluation = problem.runtime.compute_seconds
            round_time = problem.eval_seconds - before[0]
            if generation:  # the first is a warm-up
                split = {"eval": evaluation, "comm": round_time - evaluation, "update": wall - round_time}
                timed.append({"wall": wall, **split})
    except WorkerReleased:
        pass
    finally:
        problem.kill_actors()
    counted = events[startup:] if world.Get_rank() == 0 else events
    # pickled control messages are left out: the start-up exchange, and rank 0's searcher state, which
    # the distributed mode sends once (the first generation, a warm-up) and then only after a restore
    steps = 1 + generations
    mine = {
        "sent": sum(e[1] for e in counted if e[0] not in ("bcast", "allgather", "Barrier")) / steps,
        "received": sum(e[2] for e in counted if e[0] not in ("bcast", "allgather", "Barrier")) / steps,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    everyone = world.gather(mine, root=0)
    if world.Get_rank() != 0:
        return None
    mean = {key: sum(t[key] for t in timed) / len(timed) for key in timed[0]}
    workers = everyone[1:]
    return {
        "ranks": world.Get_size(),
        "mode": "distributed" if distributed else "centralized",
        "params": problem.solution_length,
        "episode_length": episode_length,
        "popsize": popsize,
        "s_per_gen": mean["wall"],
        "eval_s": mean["eval"],
        "comm_s": mean["comm"],
        "update_s": mean["update"],
        "rank0_sent": everyone[0]["sent"],
        "rank0_received": everyone[0]["received"],
        "worker_sent": max((w["sent"] for w in workers), default=0.0),
        "worker_received": max((w["received"] for w in workers), default=0.0),
        "rank0_rss_mb": everyone[0]["rss_mb"],
        "worker_rss_mb": max((w["rss_mb"] for w in workers), default=math.nan),
    }


def per_solution_costs(params: int, episode_lengths: tuple[int, ...] = (5, 25, 50)) -> dict[str, float]:
    """Milliseconds, on one thread in this process, of what a distributed generation does per solution.

    ``row_ms``: generating a row (``center + stdev * z`` into a reused buffer); ``pair_sums_ms``: the
    exact sums ``A`` and ``B`` over one mirrored pair's noise; ``eval_L_ms``: evaluating a solution
    with ``L``-step episodes (loading the parameters and the rollout); per generation:
    ``update_ms`` (PGPE's ClipUp and stdev step) and ``checksum_ms`` (the drift guard's CRC-32).
    """
    import numpy as np
    import torch

    from hpcne.algorithms import PGPE
    from hpcne.neuroevolution import GymNE
    from hpcne.parallel.threads import limit_threads
    from hpcne.sampling import NoiseStream, noise_sums, scales, state_checksum

    torch.set_num_threads(1)
    limit_threads(1)
    h = hidden_for(params)
    net = f"Linear(obs_length, {h}) >> Tanh() >> Linear({h}, {h}) >> Tanh() >> Linear({h}, act_length)"

    def problem(steps: int) -> GymNE:
        return GymNE("Pendulum-v1", net, episode_length=steps, observation_normalization=False, num_actors=None, seed=1)

    def best_of_3(work: Any) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return min(times) * 1e3

    searcher = PGPE(problem(5), popsize=400, center_learning_rate=0.01, stdev_learning_rate=0.1, stdev_init=0.01)
    d = searcher.problem.solution_length
    sample = searcher.replica_sample(NoiseStream(1, 0, d, True))
    buffer = np.empty((8, d), np.float32)
    sample.rows(0, 8, buffer)  # builds the noise table
    weights = np.random.default_rng(0).standard_normal(400) / 400
    exponents = scales(weights, symmetric=True)
    sums = noise_sums(sample.stream, weights, exponents, 0, 200)
    costs = {
        "row_ms": best_of_3(lambda: [sample.rows(i, i + 8, buffer) for i in range(0, 64, 8)]) / 64,
        "pair_sums_ms": best_of_3(lambda: noise_sums(sample.stream, weights, exponents, 0, 64)) / 64,
        "update_ms": best_of_3(lambda: searcher.apply_noise_sums(sums, exponents, float(weights.sum()))),
        "checksum_ms": best_of_3(lambda: state_checksum(searcher.replica_state())),
    }
    rows = sample.rows(0, 8, buffer).copy()
    for steps in episode_lengths:
        evaluator = problem(steps)
        evaluator._evaluate_local(rows, 0, 0)  # warm-up: buffers, env creation
        costs[f"eval_{steps}_ms"] = best_of_3(lambda: evaluator._evaluate_local(rows, 0, 0)) / len(rows)  # noqa: B023
    return costs


def model_bytes(mode: str, ranks: int, popsize: int, params: int) -> dict[str, float]:
    """Bytes a worker hands to MPI per generation (the API level the proxy counts), static split, no statistics.

    Centralized: the header ``8·3`` and a piece of rows ``4·D·⌊n/p⌋`` in, the Allreduce buffer
    ``8(n+5+p)`` in and out. Distributed: the header, the sample's ``8·3`` (how, symmetric, the
    CRC-32 of rank 0's searcher state: every rank draws from its own copy) and the Allreduce as
    above; then the update's header, ``8(n+4)`` weights in and the ``2·8·D`` fixed-point sums in
    and out (an Allreduce: every rank updates its copy). Rank 0 sends the same Bcasts and the rows
    of the others in the centralized mode. Rank 0's state (``O(D)``, pickled) travels only when it
    changed other than by the update: the first generation and after a restore.
    """
    p, n, d = ranks, popsize, params
    header, reduce = F64 * HEAD, F64 * (n + TAIL + p)
    if mode == "centralized":
        return {"worker_received": header + F32 * d * (n // p) + reduce, "worker_sent": reduce}
    sample, weights, sums = F64 * 3, F64 * (n + 4), 2 * F64 * d
    return {"worker_received": 2 * header + sample + weights + reduce + sums, "worker_sent": reduce + sums}


def wire_seconds(mode: str, ranks: int, popsize: int, params: int, *, latency: float, bandwidth: float) -> float:
    """Modelled communication time per generation on ``ranks`` ranks (binomial trees, Rabenseifner for large
    buffers): what rank 0's links carry, the critical path of both modes."""
    p, n, d = ranks, popsize, params
    log_p = math.ceil(math.log2(p)) if p > 1 else 0
    reduce = F64 * (n + TAIL + p)
    allreduce = (2 * reduce * (p - 1) / p) / bandwidth + 2 * log_p * latency
    if mode == "centralized":
        rows = F32 * d * (n - math.ceil(n / p))  # linear Scatterv from rank 0
        return log_p * latency + rows / bandwidth + (p - 1) * latency + allreduce
    bcasts = log_p * (4 * latency) + F64 * n / bandwidth * 2  # header, sample, update header, weights
    allreduce_sums = 2 * (2 * F64 * d) * (p - 1) / p / bandwidth + 2 * log_p * latency  # Rabenseifner
    return bcasts + allreduce + allreduce_sums


def scale(out: Path, *, params: list[int], popsizes: list[int], ranks: list[int], generations: int) -> str:
    """Run every case; write the CSV; return the Markdown tables and the model."""
    load = LoadTracker()
    rows: list[dict[str, Any]] = []
    for d in params:
        for n in popsizes:
            for p in ranks:
                for mode in ("centralized", "distributed"):
                    if (mode == "centralized" or p == 1) and F32 * d * n * 2 > CENTRAL_LIMIT_BYTES:
                        continue
                    args = ["--params", str(d), "--popsize", str(n), "--generations", str(generations)]
                    args += ["--distributed"] if mode == "distributed" else []
                    rows.append(run_json(mpi_command(None if p == 1 else p, "benchmarks.scale", args), timeout=1800))
                    load.sample()
    write_csv(out, rows)
    table = []
    for r in rows:
        model = model_bytes(r["mode"], r["ranks"], r["popsize"], r["params"])
        outside = (r["s_per_gen"] - r["eval_s"]) / r["s_per_gen"]
        table.append(
            [
                f"{r['params']:,}",
                r["popsize"],
                r["ranks"],
                r["mode"],
                f"{r['s_per_gen']:.2f}",
                f"{r['eval_s']:.2f} / {r['comm_s']:.2f} / {r['update_s']:.2f}",
                f"{outside:.0%}",
                _fmt(r["worker_received"]) if r["ranks"] > 1 else "-",
                _fmt(model["worker_received"]) if r["ranks"] > 1 else "-",
                _fmt(r["worker_sent"]) if r["ranks"] > 1 else "-",
                _fmt(model["worker_sent"]) if r["ranks"] > 1 else "-",
                f"{r['rank0_rss_mb']:,.0f}",
                f"{r['worker_rss_mb']:,.0f}" if r["ranks"] > 1 else "-",
            ]
        )
    headers = [
        "params D",
        "popsize n",
        "ranks",
        "mode",
        "s/gen",
        "eval / comm / update s",
        "outside eval",
        "a worker receives",
        "model",
        "a worker sends",
        "model",
        "rank 0 peak RSS MB",
        "worker peak RSS MB",
    ]
    measured = (
        f"**Measured**: PGPE on Pendulum-v1, 5-step episodes, mean of {generations} generation(s) after one "
        "warm-up; bytes handed to MPI per generation (start-up excluded)\n\n" + markdown_table(headers, table)
    )
    return measured + "\n" + model_table() + f"\n({load.describe()}; all rows: {shown(out)})\n"


def model_table(params: int = 1_000_000, per_rank: int = 10, latency: float = 2e-6, bandwidth: float = 12.5e9) -> str:
    """Both modes' modelled bytes per worker and communication time from 2 to 1,000 ranks."""
    table = []
    for p in (2, 16, 128, 1000):
        n = per_rank * p
        central, distributed = model_bytes("centralized", p, n, params), model_bytes("distributed", p, n, params)
        table.append(
            [
                f"{p:,}",
                f"{n:,}",
                _fmt(F32 * params * (n - math.ceil(n / p))),
                _fmt(central["worker_received"]),
                _fmt(distributed["worker_received"] + distributed["worker_sent"]),
                f"{wire_seconds('centralized', p, n, params, latency=latency, bandwidth=bandwidth) * 1e3:,.1f} ms",
                f"{wire_seconds('distributed', p, n, params, latency=latency, bandwidth=bandwidth) * 1e3:,.1f} ms",
            ]
        )
    headers = [
        "ranks p",
        "popsize n",
        "centralized: rank 0 sends rows",
        "centralized: a worker receives",
        "distributed: a worker moves",
        "centralized comm time",
        "distributed comm time",
    ]
    return (
        f"**Model**, D = {params:,}, {per_rank} solutions per rank; {latency * 1e6:.0f} µs latency, "
        f"{bandwidth / 1e9:.1f} GB/s (100 Gbit/s) per link, binomial-tree Bcast, linear Scatterv, "
        "Rabenseifner Allreduce/Reduce\n\n" + markdown_table(headers, table)
    )


def main() -> None:
    """One case (one MPI job; prints a JSON line on rank 0)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--params", type=int, required=True)
    parser.add_argument("--popsize", type=int, required=True)
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument(
        "--episode-length",
        type=int,
        default=5,
        help="steps per episode (the time outside evaluation is fixed per solution)",
    )
    parser.add_argument("--costs", action="store_true", help="print per-solution costs on one thread, not a case")
    args = parser.parse_args()
    if args.costs:
        print(json.dumps(per_solution_costs(args.params)), flush=True)
        return
    row = measure(args.params, args.popsize, args.distributed, args.generations, args.episode_length)
    if row is not None:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
