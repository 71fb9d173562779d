"""One side of a comparison: PGPE on a GymNE task with EvoTorch or hpcne; prints one JSON line.

Both libraries have the same API, so the same code drives either::

    python -m benchmarks.side speed --tool hpcne --task cartpole [--workers 2]
    mpiexec -n 2 python -m mpi4py -m benchmarks.side speed --tool hpcne --task cartpole
    .bench/evotorch-venv/bin/python -m benchmarks.side speed --tool evotorch --task cartpole --workers 2
    python -m benchmarks.side solve --tool hpcne --task cartpole --seed 1

``--workers``: hpcne: 0 = in-process (``num_actors=None``; under ``mpiexec -n N`` the N ranks),
N = an N-process pool; EvoTorch: 0 = in-process (``num_actors=None``), N = N Ray actors.
``speed`` times ``--generations`` generations after ``--warmup`` ones (workers start then);
``solve`` runs until the population's mean return reaches the task's target or its budget of
generations ends. Only the standard library is imported before the tool is known, so this runs
in EvoTorch's own virtual environment too.
"""

from __future__ import annotations

import os

for _name, _value in {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("HPCNE_QUIET", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.tasks import SOLVE_TASKS, SPEED_TASKS, Task  # noqa: E402

STARTED = time.perf_counter()


def build(tool: str, task: Task, workers: int, seed: int) -> tuple[Any, Any, str]:
    """Create the problem and the PGPE searcher with ``tool``; return them and a layout label."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    kwargs = task.problem_kwargs()
    if tool == "evotorch":
        import ray
        from evotorch.algorithms import PGPE
        from evotorch.neuroevolution import GymNE

        if workers:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
        problem = GymNE(**kwargs, num_actors=workers or None)
        layout = f"Ray, {workers} actor{'s' * (workers > 1)}" if workers else "in-process"
    else:
        from hpcne.algorithms import PGPE
        from hpcne.neuroevolution import GymNE

        problem = GymNE(**kwargs, num_actors=workers or None, seed=seed, actor_config={"num_threads": 1})
        ranks = _world_size()
        layout = f"MPI, {ranks} ranks" if ranks > 1 else (f"pool, {workers} workers" if workers else "in-process")
    searcher = PGPE(problem, **task.searcher_kwargs())
    return problem, searcher, layout


def _world_size() -> int:
    mpi = sys.modules.get("mpi4py.MPI")
    return mpi.COMM_WORLD.Get_size() if mpi is not None else 1


def measure_speed(tool: str, task: Task, workers: int, seed: int, warmup: int, generations: int) -> dict[str, Any]:
    """Time ``generations`` generations after ``warmup``; steps/s and seconds per generation."""
    problem, searcher, layout = build(tool, task, workers, seed)
    for _ in range(warmup):
        searcher.step()
    steps, episodes = problem.interaction_count, problem.episode_count
    start = time.perf_counter()
    for _ in range(generations):
        searcher.step()
    seconds = time.perf_counter() - start
    steps, episodes = problem.interaction_count - steps, problem.episode_count - episodes
    result = {
        "tool": tool,
        "layout": layout,
        "steps": int(steps),
        "episodes": int(episodes),
        "generations": generations,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "seconds_per_generation": seconds / generations,
        "startup_seconds": start - STARTED,
        "mean_eval": float(searcher.status["mean_eval"]),
    }
    _close(tool, problem, workers)
    return result


def _close(tool: str, problem: Any, workers: int) -> None:
    """Stop the workers (EvoTorch's ``kill_actors`` fails when it never had any)."""
    if tool == "hpcne" or workers:
        problem.kill_actors()


def measure_solve(tool: str, task: Task, workers: int, seed: int, max_seconds: float) -> dict[str, Any]:
    """Run until the population's mean return reaches ``task.target``, or the budget (generations, seconds) ends."""
    problem, searcher, layout = build(tool, task, workers, seed)
    assert task.target is not None
    start = time.perf_counter()
    reached_at: dict[str, float] | None = None
    best_mean = -float("inf")
    for generation in range(1, task.max_generations + 1):
        searcher.step()
        mean = float(searcher.status["mean_eval"])
        best_mean = max(best_mean, mean)
        if mean >= task.target:
            reached_at = {
                "generations": generation,
                "interactions": int(problem.interaction_count),
                "seconds": time.perf_counter() - start,
            }
            break
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    result = {
        "tool": tool,
        "layout": layout,
        "seed": seed,
        "solved": reached_at is not None,
        "generations": generation,
        "interactions": int(problem.interaction_count),
        "seconds": seconds,
        "startup_seconds": start - STARTED,
        "final_mean_eval": float(searcher.status["mean_eval"]),
        "best_mean_eval": best_mean,
        **{f"reached_{key}": value for key, value in (reached_at or {}).items()},
    }
    _close(tool, problem, workers)
    return result


def main() -> None:
    """Parse the arguments, measure, print one JSON line (on the main process only)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "solve"])
    parser.add_argument("--tool", choices=["hpcne", "evotorch"], required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--max-generations", type=int, default=None, help="override the task's budget")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop a solve run after this long")
    args = parser.parse_args()
    if args.what == "speed":
        result = measure_speed(
            args.tool, SPEED_TASKS[args.task], args.workers, args.seed, args.warmup, args.generations
        )
    else:
        task = SOLVE_TASKS[args.task]
        if args.max_generations is not None:
            task = dataclasses.replace(task, max_generations=args.max_generations)
        result = measure_solve(args.tool, task, args.workers, args.seed, args.max_seconds)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
