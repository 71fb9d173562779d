"""Scaling over MPI ranks: steps/s, parallel efficiency and the split of a generation's time.

The driver launches ``mpiexec -n N python -m mpi4py -m benchmarks.scaling measure ...`` for each
N (1 is a plain in-process run), the layouts taking turns repetition after repetition. Each run
times PGPE generations after a warm-up one. Per generation:

- **evaluation**: the longest time any rank spent evaluating its piece (``_evaluate_local``,
  timed on every rank by wrapping the problem's method; the slowest rank sets the pace), and
  how much longer than the mean rank it took (imbalance);
- **communication**: rank 0's time in ``problem.evaluate_values`` (the whole round) minus that
  evaluation time: the header ``Bcast``, the ``Scatterv`` of rows, the ``Allreduce`` of
  fitnesses and statistics, and the wait for ranks that start late;
- **searcher update**: rank 0's ``searcher.step()`` time minus its round: sampling, ranking,
  the ClipUp update, bookkeeping.

Parallel efficiency is ``steps/s with N ranks / (N × steps/s with 1)``; past the machine's cores
(oversubscribed) it is also given per core used, ``/ (min(N, cores) × steps/s with 1)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import LoadTracker, markdown_table, median, mpi_command, run_json, shown, write_csv
from benchmarks.tasks import SPEED_TASKS

__all__ = ["scaling"]


def measure(task_name: str, generations: int, seed: int) -> dict[str, Any] | None:
    """Run on every rank; return the timings on rank 0 (None on the others)."""
    import torch

    from hpcne.algorithms import PGPE
    from hpcne.neuroevolution import GymNE
    from hpcne.parallel import WorkerReleased

    torch.set_num_threads(1)
    task = SPEED_TASKS[task_name]
    problem = GymNE(**task.problem_kwargs(), num_actors=None, seed=seed, actor_config={"num_threads": 1})
    local_seconds: dict[int, float] = defaultdict(float)  # evaluation round -> this rank's evaluation time
    evaluate_local = problem._evaluate_local

    def timed_evaluate_local(values: Any, first_index: int, eval_round: int) -> Any:
        started = time.perf_counter()
        try:
            return evaluate_local(values, first_index, eval_round)
        finally:
            local_seconds[eval_round] += time.perf_counter() - started

    problem._evaluate_local = timed_evaluate_local  # the runtime calls it on every rank
    searcher = PGPE(problem, **task.searcher_kwargs())
    rows: list[dict[str, float]] = []
    try:
        searcher.step()  # warm-up: the runtime starts, environments are built
        for _ in range(generations):
            eval_round = problem._eval_round
            steps, eval_before = problem.interaction_count, problem.eval_seconds
            comm_before = getattr(problem, "comm_seconds", None)
            started = time.perf_counter()
            searcher.step()
            step_seconds = time.perf_counter() - started
            row = {
                "eval_round": eval_round,
                "steps": problem.interaction_count - steps,
                "step_seconds": step_seconds,
                "round_seconds": problem.eval_seconds - eval_before,
            }
            if comm_before is not None:  # hpcne's own figure, where the runtime reports one
                row["hpcne_comm_seconds"] = problem.comm_seconds - comm_before
            rows.append(row)
        ranks = problem.runtime.num_workers
    except WorkerReleased:
        rows, ranks = [], 0
    finally:
        problem.kill_actors()
    per_rank = _gather(dict(local_seconds))
    if per_rank is None:
        return None
    for row in rows:
        times = [rank_times.get(int(row["eval_round"]), 0.0) for rank_times in per_rank]
        row["evaluation_seconds"] = max(times)
        row["mean_rank_evaluation_seconds"] = sum(times) / len(times)
    return {"ranks": ranks, "generations": rows}


def _gather(local: dict[int, float]) -> list[dict[int, float]] | None:
    """Every rank's evaluation times, on rank 0 (after the runtime released the workers)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or mpi.COMM_WORLD.Get_size() == 1:
        return [local]
    gathered = mpi.COMM_WORLD.gather(local, root=0)
    return gathered if mpi.COMM_WORLD.Get_rank() == 0 else None


def _summarise(task_name: str, ranks: int, repeat: int, run: dict[str, Any], load: float) -> dict[str, Any]:
    gens = run["generations"]
    steps = sum(g["steps"] for g in gens)
    seconds = sum(g["step_seconds"] for g in gens)
    evaluation = sum(g["evaluation_seconds"] for g in gens) / len(gens)
    mean_rank = sum(g["mean_rank_evaluation_seconds"] for g in gens) / len(gens)
    round_seconds = sum(g["round_seconds"] for g in gens) / len(gens)
    row = {
        "task": task_name,
        "ranks": ranks,
        "repeat": repeat,
        "generations": len(gens),
        "steps": steps,
        "seconds": round(seconds, 4),
        "steps_per_s": round(steps / seconds, 1),
        "seconds_per_generation": round(seconds / len(gens), 4),
        "evaluation_s": round(evaluation, 4),
        "imbalance": round(evaluation / mean_rank, 3),
        "communication_s": round(round_seconds - evaluation, 4),
        "update_s": round(seconds / len(gens) - round_seconds, 4),
        "load": round(load, 2),
    }
    if "hpcne_comm_seconds" in gens[0]:
        row["hpcne_comm_s"] = round(sum(g["hpcne_comm_seconds"] for g in gens) / len(gens), 4)
    return row


def scaling(
    out: Path, *, tasks: list[str], ranks: list[int], repeats: int, generations: dict[str, int], seed: int = 1
) -> str:
    """Run every layout ``repeats`` times, taking turns; write the CSV and return the Markdown."""
    load = LoadTracker()
    rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for task_name in tasks:
            for n in ranks:
                args = [
                    "measure",
                    "--task",
                    task_name,
                    "--generations",
                    str(generations[task_name]),
                    "--seed",
                    str(seed),
                ]
                run = run_json(mpi_command(n if n > 1 else None, "benchmarks.scaling", args))
                rows.append(_summarise(task_name, n, repeat, run, load.sample()))
                last = rows[-1]
                print(f"  {task_name} {n} rank(s), repeat {repeat}: {last['steps_per_s']:,.0f} steps/s", flush=True)
    write_csv(out, rows)
    cores = os.cpu_count() or 1
    text = []
    for task_name in tasks:
        task = SPEED_TASKS[task_name]
        mine = [r for r in rows if r["task"] == task_name]
        base = median(r["steps_per_s"] for r in mine if r["ranks"] == ranks[0]) / ranks[0]
        table = []
        for n in ranks:
            rs = [r for r in mine if r["ranks"] == n]
            rate = median(r["steps_per_s"] for r in rs)
            note = f"yes ({n} ranks on {cores} cores)" if n > cores else "no"
            table.append(
                [
                    n,
                    note,
                    f"{rate:,.0f}",
                    f"{min(r['steps_per_s'] for r in rs):,.0f}–{max(r['steps_per_s'] for r in rs):,.0f}",
                    f"{rate / (n * base):.2f}",
                    f"{rate / (min(n, cores) * base):.2f}",
                    f"{median(r['seconds_per_generation'] for r in rs):.3f}",
                    f"{median(r['evaluation_s'] for r in rs):.3f}",
                    f"{median(r['imbalance'] for r in rs):.2f}",
                    f"{median(r['communication_s'] for r in rs):.4f}",
                    f"{median(r['update_s'] for r in rs):.4f}",
                ]
            )
        headers = [
            "ranks",
            "oversubscribed",
            "steps/s (median)",
            "range",
            "efficiency",
            "per core used",
            "s/generation",
            "evaluation s",
            "slowest ÷ mean rank",
            "communication s",
            "update s",
        ]
        text.append(
            f"**{task.env}**, `{task.network}`, popsize {task.popsize}, {generations[task_name]} generations after "
            "one warm-up, "
            f"observation normalization {'on' if task.observation_normalization else 'off'}, {repeats} runs per "
            "layout, MPI (rank 0 evaluates a share; 1 rank = in-process)\n\n" + markdown_table(headers, table)
        )
    return "\n".join(text) + f"\n({load.describe()} during the runs; all runs: {shown(out)})\n"


def main() -> None:
    """``measure`` (one run, prints a JSON line on rank 0)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("what", choices=["measure"])
    parser.add_argument("--task", choices=sorted(SPEED_TASKS), required=True)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = measure(args.task, args.generations, args.seed)
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
