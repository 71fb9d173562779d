"""Benchmark of hpcne's parallel runtimes: parallel efficiency, and the MPI coordinator's overhead.

Run the driver, which launches every measurement in a fresh process (under ``mpiexec`` for the MPI
layouts), repeats it and prints the medians as Markdown::

    python -m benchmarks parallel                       # everything, 3 repetitions
    python -m benchmarks parallel --only cartpole --repeats 5
    python -m benchmarks parallel --only overhead

One measurement by hand (prints one JSON line; from the repository root)::

    python -m benchmarks.parallel measure efficiency --task halfcheetah [--workers 2]
    mpiexec -n 2 python -m mpi4py -m benchmarks.parallel measure efficiency --task cartpole
    mpiexec -n 3 python -m mpi4py -m benchmarks.parallel measure overhead

Parallel efficiency is ``steps/s with N workers / (N x steps/s of one worker)``; every layout runs
the same PGPE generations (same seed, so the same environment steps), one thread per worker,
after one warm-up generation. The layouts take turns, repetition after repetition, so that a
change in the machine's load hits them alike; on a shared machine read the load average too.

The overhead is the time of ``problem.evaluate_values`` for a near-zero-cost problem (popsize
1000, 10,000 parameters, and 100 for the latency alone), next to a bare ``Scatterv`` of the same
rows and one ``memcpy`` of the rows that must leave rank 0 (the floor of any scheme that copies
them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import ROOT
from hpcne.parallel.launch import find_mpiexec

TASKS: dict[str, dict[str, Any]] = {
    "halfcheetah": {
        "env": "HalfCheetah-v5",
        "network": "Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)",
        "popsize": 20,
        "episode_length": 1000,
        "stdev_init": 0.1,
        "bare_steps": 20_000,  # per process, for the ceiling (a few seconds, as the runs above)
    },
    "cartpole": {
        "env": "CartPole-v1",
        "network": "Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)",
        "popsize": 400,
        "episode_length": None,
        "stdev_init": 0.5,
        "bare_steps": 100_000,
    },
}


# ------------------------------------------------------------------ measurements
def measure_efficiency(task: str, workers: int | None, generations: int) -> dict[str, Any] | None:
    """Run PGPE generations on ``task``; return steps and seconds (None on MPI worker ranks)."""
    from hpcne.algorithms import PGPE
    from hpcne.neuroevolution import GymNE
    from hpcne.parallel import WorkerReleased

    spec = TASKS[task]
    problem = GymNE(
        spec["env"],
        spec["network"],
        seed=1,
        num_actors=workers,
        episode_length=spec["episode_length"],
        actor_config={"num_threads": 1},
    )
    searcher = PGPE(
        problem,
        popsize=spec["popsize"],
        center_learning_rate=0.01,
        stdev_learning_rate=0.1,
        stdev_init=spec["stdev_init"],
    )
    try:
        searcher.step()  # warm-up: workers start, environments are built
        steps, start = problem.interaction_count, time.perf_counter()
        for _ in range(generations):
            searcher.step()
        seconds = time.perf_counter() - start
        runtime = problem.runtime
    except WorkerReleased:
        return None
    finally:
        problem.kill_actors()
    return {
        "steps": problem.interaction_count - steps,
        "seconds": seconds,
        "workers": runtime.num_workers,
        "runtime": type(runtime).__name__,
    }


def _bare_loop(env_id: str, steps: int, start: Any, seconds: Any) -> None:
    """After ``start`` (a barrier), take ``steps`` random-action steps on ``env_id``; put the seconds taken."""
    from benchmarks.rollout import Bare, Tally

    bare, tally = Bare(env_id), Tally()
    bare.run(1_000, Tally())  # warm-up
    start.wait()
    bare.run(steps, tally)
    seconds.put(tally.wall)


def measure_ceiling(task: str, processes: int) -> dict[str, Any]:
    """Bare ``env.step`` loops in ``processes`` processes at once: what any parallel runtime can reach here.

    Each process takes the same number of steps, as workers evaluate equal shares of a generation,
    and the time is that of the slowest, as a generation waits for its slowest worker. Against one
    process this gives the machine's own parallel efficiency (shared caches and memory bandwidth,
    a hypervisor's scheduling, per-core speed differences): the ceiling of hpcne's.
    """
    ctx = mp.get_context("fork")
    steps = TASKS[task]["bare_steps"]
    start, seconds = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(target=_bare_loop, args=(TASKS[task]["env"], steps, start, seconds)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    slowest = max(seconds.get(timeout=600) for _ in workers)
    for w in workers:
        w.join()
    return {"steps": steps * processes, "seconds": slowest, "workers": processes}


def measure_overhead(rounds: int, params: int) -> dict[str, Any] | None:
    """Time ``evaluate_values`` of a near-zero-cost problem, then a bare ``Scatterv`` of the same rows.

    Returns None on MPI worker ranks.
    """
    from hpcne.core import Problem
    from hpcne.parallel import WorkerReleased

    problem = Problem("min", lambda x: x[:, 0], solution_length=params, vectorized=True, seed=0)
    values = problem.make_gaussian(1000, params).numpy()
    times = []
    worker = False
    try:
        for _ in range(3):  # warm-up: the runtime starts, buffers are allocated
            problem.evaluate_values(values)
        for _ in range(rounds):
            start = time.perf_counter()
            problem.evaluate_values(values)
            times.append(time.perf_counter() - start)
        runtime = problem.runtime
    except WorkerReleased:
        worker = True
    finally:
        problem.kill_actors()
    scatter = bare_scatter_ms(values, rounds)
    if worker:
        return None
    share = 1000 // runtime.num_workers if getattr(runtime, "coordinator_evaluates", False) else 1000
    leaving = values[share:]
    target = np.empty_like(leaving)
    copies = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.copyto(target, leaving)
        copies.append(time.perf_counter() - start)
    return {
        "workers": runtime.num_workers,
        "runtime": type(runtime).__name__,
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "copy_ms": 1000 * statistics.median(copies) if len(leaving) else None,
        "scatter_ms": scatter,
    }


def bare_scatter_ms(values: np.ndarray, rounds: int) -> float | None:
    """Median time of an mpi4py ``Scatterv`` of the rows alone (None outside an MPI job)."""
    if "mpi4py.MPI" not in sys.modules or sys.modules["mpi4py.MPI"].COMM_WORLD.Get_size() == 1:
        return None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    n, width = values.shape
    counts = np.full(comm.size, n // comm.size)
    counts[: n % comm.size] += 1
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mine = np.empty((counts[comm.rank], width), values.dtype)
    times = []
    for _ in range(rounds):
        comm.Barrier()
        start = time.perf_counter()
        if comm.rank == 0:
            comm.Scatterv([values, (counts * width, starts * width)], MPI.IN_PLACE, root=0)
        else:
            comm.Scatterv(None, mine, root=0)
        comm.Gather(np.zeros(1), np.zeros(comm.size) if comm.rank == 0 else None, root=0)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# ------------------------------------------------------------------------ driver
def launch(args: list[str], *, ranks: int | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh process (on ``ranks`` MPI ranks); return its JSON line."""
    command = [sys.executable, "-m", "mpi4py", "-m", "benchmarks.parallel", "measure", *args]
    if ranks is not None:
        command = [find_mpiexec() or "mpiexec", "-n", str(ranks), *command]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # finds `benchmarks`
    full_env = {**os.environ, "PYTHONPATH": path, "HPCNE_QUIET": "1", "MPIEXEC_TIMEOUT": "900", **(env or {})}
    full_env.pop("HPCNE_BACKEND", None)
    done = subprocess.run(command, capture_output=True, text=True, env=full_env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


EFFICIENCY_LAYOUTS: list[tuple[str, list[str], int | None, dict[str, str]]] = [
    # (label, extra arguments, MPI ranks, environment)
    ("serial (1 worker)", [], None, {}),
    ("pool, 2 workers", ["--workers", "2"], None, {}),
    ("MPI, 2 ranks (rank 0 evaluates)", [], 2, {}),
    ("MPI, 3 ranks (rank 0 only coordinates)", [], 3, {"HPCNE_MPI_COORDINATOR_EVALUATES": "0"}),
]
OVERHEAD_LAYOUTS: list[tuple[str, int | None]] = [("serial", None), ("MPI, 2 ranks", 2), ("MPI, 3 ranks", 3)]


CEILING_LAYOUTS = [("bare env.step, 1 process", 1), ("bare env.step, 2 processes at once (the ceiling)", 2)]


def efficiency_table(task: str, repeats: int, generations: int) -> str:
    """Median steps/s per layout; the layouts take turns, so that they share the machine's load alike.

    The bare ``env.step`` rows give the machine's own efficiency at 2 processes, measured in the same turns.
    """
    rates: dict[str, list[float]] = {label: [] for label, *_ in [*EFFICIENCY_LAYOUTS, *CEILING_LAYOUTS]}
    loads = []
    for _ in range(repeats):
        for label, extra, ranks, env in EFFICIENCY_LAYOUTS:
            args = ["efficiency", "--task", task, "--generations", str(generations), *extra]
            run = launch(args, ranks=ranks, env=env)
            rates[label].append(run["steps"] / run["seconds"])
            loads.append(os.getloadavg()[0])
        for label, processes in CEILING_LAYOUTS:
            args = ["ceiling", "--task", task, "--workers", str(processes)]
            run = launch(args, ranks=None)
            rates[label].append(run["steps"] / run["seconds"])
    rows = []
    layouts = [(label, 2 if ranks is not None or extra else 1) for label, extra, ranks, _ in EFFICIENCY_LAYOUTS]
    for group, baseline_label in ((layouts, layouts[0][0]), (CEILING_LAYOUTS, CEILING_LAYOUTS[0][0])):
        baseline = statistics.median(rates[baseline_label])
        for label, evaluating in group:
            rate = statistics.median(rates[label])
            spread = f"{min(rates[label]):,.0f}–{max(rates[label]):,.0f}"
            rows.append(f"| {label} | {evaluating} | {rate:,.0f} | {spread} | {rate / (evaluating * baseline):.2f} |")
    spec = TASKS[task]
    header = (
        f"**{spec['env']}**, popsize {spec['popsize']}, {generations} generations, {repeats} runs "
        f"(load average {min(loads):.1f}–{max(loads):.1f})\n\n"
    )
    table = "| layout | evaluating workers | steps/s (median) | range | efficiency |\n|---|---|---|---|---|\n"
    return header + table + "\n".join(rows) + "\n"


def overhead_table(repeats: int, rounds: int, params: int) -> str:
    """Median time per generation per layout; the layouts take turns."""
    args = ["overhead", "--rounds", str(rounds), "--params", str(params)]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in OVERHEAD_LAYOUTS}
    for _ in range(repeats):
        for label, ranks in OVERHEAD_LAYOUTS:
            runs[label].append(launch(args, ranks=ranks))
    rows = []
    for label, _ in OVERHEAD_LAYOUTS:
        done = runs[label]
        median = statistics.median(r["median_ms"] for r in done)
        best = min(r["min_ms"] for r in done)
        copy = "–" if done[0]["copy_ms"] is None else f"{statistics.median(r['copy_ms'] for r in done):.2f}"
        scatter = "–" if done[0]["scatter_ms"] is None else f"{statistics.median(r['scatter_ms'] for r in done):.2f}"
        rows.append(f"| {label} | {median:.2f} | {best:.2f} | {scatter} | {copy} |")
    header = f"**Coordinator overhead**: popsize 1000 x {params:,} parameters, {rounds} rounds x {repeats} runs\n\n"
    table = (
        "| layout | ms per generation (median) | best | bare Scatterv + Gather (ms) "
        "| memcpy of the rows leaving rank 0 (ms) |\n|---|---|---|---|---|\n"
    )
    return header + table + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """The driver (``python -m benchmarks parallel``), or one measurement (``... measure WHAT``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["measure"]:
        parser = argparse.ArgumentParser(prog="python -m benchmarks.parallel measure")
        parser.add_argument("what", choices=["efficiency", "ceiling", "overhead"])
        parser.add_argument("--task", choices=sorted(TASKS), default="cartpole")
        parser.add_argument("--workers", type=int, default=None)
        parser.add_argument("--generations", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=30)
        parser.add_argument("--params", type=int, default=10_000)
        args = parser.parse_args(argv[1:])
        if args.what == "efficiency":
            result = measure_efficiency(args.task, args.workers, args.generations)
        elif args.what == "ceiling":
            result = measure_ceiling(args.task, args.workers or 1)
        else:
            result = measure_overhead(args.rounds, args.params)
        if result is not None:
            print(json.dumps(result), flush=True)
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks parallel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=[*TASKS, "overhead"], action="append")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    chosen = args.only or [*TASKS, "overhead"]
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    for what in chosen:
        if what == "overhead":
            for params in (10_000, 100):
                print(overhead_table(args.repeats, args.rounds, params), flush=True)
        else:
            print(efficiency_table(what, args.repeats, args.generations), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
