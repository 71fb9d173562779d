"""A small PGPE run on Pendulum (real-valued returns, action noise) per layout, for the parallel tests.

Run as a script (``python layouts.py``, ``mpiexec -n 3 python -m mpi4py layouts.py``) it runs
every configuration of :data:`RUNS` and prints one JSON object per line, on rank 0 only. The
worker ranks serve each run and go on to the next when it ends (they catch ``WorkerReleased``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import hpcne.parallel  # noqa: F401 -- under mpiexec: initialize MPI early, abort the job on a failure
from hpcne.algorithms import PGPE
from hpcne.neuroevolution import GymNE
from hpcne.parallel import WorkerReleased

GENERATIONS = 3
SPLITS: dict[str, dict[str, int]] = {
    "static": {},
    "num_subbatches=7": {"num_subbatches": 7},
    "subbatch_size=3": {"subbatch_size": 3},
}
# (split, observation normalization, repetition)
RUNS = [(split, False, 0) for split in SPLITS] + [
    ("static", True, 0),
    ("static", True, 1),
    ("subbatch_size=3", True, 0),
]
# (split, observation normalization) of the distributed runs, each compared with the centralized run
DISTRIBUTED_RUNS = [(split, False) for split in SPLITS] + [("subbatch_size=3", True)]


def run(split: str, obs_norm: bool, num_actors: int | None = None, *, distributed: bool = False) -> dict[str, Any]:
    """Run PGPE for a few generations; return what neither the layout nor the mode may change."""
    problem = GymNE(
        "Pendulum-v1",
        "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)",
        seed=7,
        num_actors=num_actors,
        observation_normalization=obs_norm,
        num_episodes=2,
        episode_length=40,
        action_noise_stdev=0.1,
        **SPLITS[split],
    )
    searcher = PGPE(
        problem,
        popsize=12,
        center_learning_rate=0.05,
        stdev_learning_rate=0.1,
        radius_init=2.0,
        distributed=distributed,
    )
    out: dict[str, Any] = {
        "split": split,
        "obs_norm": obs_norm,
        "distributed": distributed,
        "fitness": [],
        "center": [],
        "stdev": [],
        "stats": [],
    }
    try:
        for _ in range(GENERATIONS):
            searcher.step()
            out["fitness"].append(searcher.population.evals[:, 0].tolist())
            out["center"].append(searcher.status["center"].tolist())
            out["stdev"].append(searcher.status["stdev"].tolist())
            out["stats"].append(problem.get_observation_stats().pack().tolist() if obs_norm else [])
        out["counters"] = [problem.interaction_count, problem.episode_count]
        out["workers"] = problem.runtime.num_workers
        out["runtime"] = type(problem.runtime).__name__
    finally:
        problem.kill_actors()
    return out


def main() -> None:
    runs = [(split, obs_norm, repetition, False) for split, obs_norm, repetition in RUNS]
    runs += [(split, obs_norm, 0, True) for split, obs_norm in DISTRIBUTED_RUNS]
    for split, obs_norm, repetition, distributed in runs:
        try:
            result = run(split, obs_norm, distributed=distributed)
        except WorkerReleased:
            continue  # a worker rank: it served this run
        print(json.dumps({**result, "repetition": repetition}), flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
