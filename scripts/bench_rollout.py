"""Single-core rollout throughput of hpcne against the bare environment, measured in the same run.

For each case the script alternates, ``--repeats`` times:

(a) the bare environment: ``env.step`` with random actions (sampled beforehand) in a plain
    loop, resetting when an episode ends;
(b) hpcne: ``GymNE.evaluate`` on a fixed population, serially (``num_actors=None``) with one
    torch/BLAS thread; steps/s = interaction_count / seconds.

It prints a table of medians (steps/s and the hpcne/bare ratio, the ratio being taken within
each repeat so that machine load affects both sides alike) and writes every measurement to the
CSV file given by ``--out``.

Usage::

    python scripts/bench_rollout.py --out bench_rollout.csv [--repeats 5] [--quick]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HPCNE_QUIET", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

from hpcne.neuroevolution import GymNE  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    env_id: str
    network: str
    popsize: int
    episode_length: int | None
    rollout_batch_size: int | None
    bare_steps: int

    @property
    def label(self) -> str:
        """Human-readable name."""
        rbs = "auto (32)" if self.rollout_batch_size is None else str(self.rollout_batch_size)
        return f"{self.env_id} popsize={self.popsize} rollout_batch_size={rbs}"


CARTPOLE_NET = "Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)"
CHEETAH_NET = "Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)"


def cases(quick: bool) -> list[Case]:
    """The configurations to measure (smaller ones with ``quick``)."""
    scale = 4 if quick else 1
    return [
        Case("CartPole-v1", CARTPOLE_NET, 200 // scale, None, None, 40_000 // scale),
        Case("CartPole-v1", CARTPOLE_NET, 200 // scale, None, 1, 40_000 // scale),
        Case("HalfCheetah-v5", CHEETAH_NET, 20 // scale, 1000, None, 10_000 // scale),
    ]


def bare_steps_per_second(env_id: str, steps: int, seed: int) -> tuple[float, float, float]:
    """Random-action ``env.step`` throughput (wall, CPU) and mean episode length of a plain loop."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    episodes = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            episodes += 1
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    env.close()
    return steps / seconds, steps / cpu_seconds, steps / max(episodes, 1)


def make_problem(case: Case) -> tuple[GymNE, torch.Tensor]:
    """The problem and a fixed population of N(0, 1) parameter vectors."""
    problem = GymNE(
        case.env_id,
        case.network,
        num_actors=None,
        seed=0,
        episode_length=case.episode_length,
        rollout_batch_size=case.rollout_batch_size,
    )
    generator = torch.Generator().manual_seed(0)
    values = torch.randn((case.popsize, problem.solution_length), generator=generator)
    return problem, values


def hpcne_steps_per_second(problem: GymNE, values: torch.Tensor) -> tuple[float, float, float]:
    """Throughput (wall, CPU) and mean episode length of one serial population evaluation."""
    batch = problem.generate_batch(len(values))
    batch.set_values(values)
    steps0, episodes0 = problem.interaction_count, problem.episode_count
    start, cpu_start = time.perf_counter(), time.process_time()
    problem.evaluate(batch)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    steps = problem.interaction_count - steps0
    return steps / seconds, steps / cpu_seconds, steps / (problem.episode_count - episodes0)


def main() -> None:
    """Run the benchmark, print the table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="CSV file for all measurements")
    parser.add_argument("--repeats", type=int, default=5, help="alternations of bare and hpcne (default 5)")
    parser.add_argument("--quick", action="store_true", help="smaller populations and loops, for a smoke test")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows: list[dict[str, object]] = []
    all_cases = cases(args.quick)
    problems = {case: make_problem(case) for case in all_cases}
    for problem, values in problems.values():  # warm up: environments, policy buffers, caches
        hpcne_steps_per_second(problem, values[:2])
    for repeat in range(args.repeats):
        for case in all_cases:
            bare, bare_cpu, bare_len = bare_steps_per_second(case.env_id, case.bare_steps, seed=repeat)
            ours, ours_cpu, ours_len = hpcne_steps_per_second(*problems[case])
            rows.append(
                {
                    "case": case.label,
                    "env": case.env_id,
                    "popsize": case.popsize,
                    "rollout_batch_size": case.rollout_batch_size or "auto",
                    "repeat": repeat,
                    "bare_steps_per_s": round(bare, 1),
                    "hpcne_steps_per_s": round(ours, 1),
                    "ratio": round(ours / bare, 4),
                    "bare_steps_per_cpu_s": round(bare_cpu, 1),
                    "hpcne_steps_per_cpu_s": round(ours_cpu, 1),
                    "cpu_ratio": round(ours_cpu / bare_cpu, 4),
                    "bare_mean_episode_length": round(bare_len, 1),
                    "hpcne_mean_episode_length": round(ours_len, 1),
                }
            )
            print(
                f"repeat {repeat}: {case.label}: bare {bare:,.0f} steps/s, hpcne {ours:,.0f} steps/s "
                f"(per CPU second: {bare_cpu:,.0f} and {ours_cpu:,.0f})",
                flush=True,
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    header = (
        f"{'case':<48} {'bare steps/s':>13} {'hpcne steps/s':>14} {'hpcne/bare':>11} {'per CPU s':>10} "
        f"{'ep. length bare/hpcne':>22}"
    )
    print(f"\nMedians over {args.repeats} alternations (single core):\n{header}\n{'-' * len(header)}")
    for case in all_cases:
        mine = [r for r in rows if r["case"] == case.label]

        def median(key: str, rows: list[dict[str, object]] = mine) -> float:
            return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]

        lengths = f"{median('bare_mean_episode_length'):.0f} / {median('hpcne_mean_episode_length'):.0f}"
        print(
            f"{case.label:<48} {median('bare_steps_per_s'):>13,.0f} {median('hpcne_steps_per_s'):>14,.0f} "
            f"{median('ratio'):>10.0%} {median('cpu_ratio'):>10.0%} {lengths:>22}"
        )
    print(f"\nAll measurements: {args.out}")


if __name__ == "__main__":
    main()
