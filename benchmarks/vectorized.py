"""Per-core throughput of VecGymNE against GymNE and the bare scalar and vector env loops, in one run.

For each case, every repeat interleaves two pairs (as in :mod:`benchmarks.throughput`): the bare
vector env loop (random actions, gymnasium's default autoreset) around VecGymNE evaluating a fixed
N(0, 1) population of N solutions on N sub-environments, and the bare ``env.step`` loop around
GymNE evaluating the same population. Ratios are taken within each repeat; the table gives medians.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import rollout
from benchmarks.common import LoadTracker, markdown_table, shown, write_csv

__all__ = ["VECTOR_CASES", "vectorized"]

# (env, N = sub-environments (None: VecGymNE's automatic choice), popsize, episode_length,
# bare steps per chunk, population, schedule).
# Populations: "N(0, 1)" random policies (early training: CartPole episodes of 8-500 steps) and
# "balancing" ones (late training: every CartPole episode runs to its 500-step limit).
VECTOR_CASES = [
    ("CartPole-v1", 64, 256, None, 20_000, "N(0, 1)", "waves"),
    ("CartPole-v1", 64, 256, None, 20_000, "N(0, 1)", "refill"),
    ("CartPole-v1", 64, 64, None, 40_000, "balancing", "waves"),
    ("CartPole-v1", 512, 2048, None, 100_000, "N(0, 1)", "waves"),
    ("CartPole-v1", 512, 2048, None, 100_000, "N(0, 1)", "refill"),
    ("CartPole-v1", 512, 512, None, 200_000, "balancing", "waves"),
    ("HalfCheetah-v5", None, 20, 1000, 10_000, "N(0, 1)", "waves"),  # N: VecGymNE's automatic choice
]
GOAL_STEPS_PER_S = {"CartPole-v1": 2e6}  # VecGymNE on CartPole-v1, per core (issue 14)


def balancing_population(problem: Any, n: int) -> Any:
    """``n`` policies near one that balances CartPole: push towards the side the pole falls to.

    The first hidden unit reads ``0.05 x + 0.3 x_dot + 3 theta + theta_dot``; the two outputs are
    plus and minus that unit; all other weights are N(0, 0.01^2) noise.
    """
    import torch

    net = problem.make_net(torch.zeros(problem.solution_length))
    first, last = net[0], net[-1]
    with torch.no_grad():
        first.weight[0] = torch.tensor([0.05, 0.3, 3.0, 1.0])
        last.weight[1, 0], last.weight[0, 0] = 1.0, -1.0
    center = torch.nn.utils.parameters_to_vector(net.parameters())
    noise = 0.01 * torch.randn((n, center.numel()), generator=torch.Generator().manual_seed(0))
    return center + noise


class BareVector:
    """A plain random-action loop on one vector env (the vector entry point if any, else sync)."""

    def __init__(self, env_id: str, num_envs: int) -> None:
        import gymnasium as gym

        mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
        self.env = gym.make_vec(env_id, num_envs, vectorization_mode=mode)
        self.env.action_space.seed(0)
        self.env.reset(seed=0)

    def run(self, steps: int, tally: Any) -> None:
        """Take about ``steps`` sub-environment steps (actions sampled before the clock starts)."""
        env = self.env
        calls = max(1, steps // env.num_envs)
        actions = [env.action_space.sample() for _ in range(calls)]
        episodes = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            episodes += int(terminated.sum() + truncated.sum())
        tally.add(calls * env.num_envs, episodes, time.perf_counter() - wall, time.process_time() - cpu)


def vectorized(out: Path, network: str, *, repeats: int, chunks: int, quick: bool) -> str:
    """Measure every case of :data:`VECTOR_CASES`; write the CSV and return the Markdown table."""
    from hpcne.neuroevolution import VecGymNE

    scale = 4 if quick else 1
    load = LoadTracker()
    measured = []
    for env_id, n, popsize, length, bare_steps, population, schedule in VECTOR_CASES:
        n = n and max(n // scale, 2)
        case = rollout.Case(env_id, network, max(popsize // scale, 2), length, None, bare_steps // scale)
        vec = rollout.Evolving(
            case, VecGymNE(env_id, network, max_num_envs=n, seed=0, episode_length=length, schedule=schedule)
        )
        if population == "balancing":
            vec.values = balancing_population(vec.problem, case.popsize)
        vec.run(rollout.Tally())  # warm-up, and the automatic number of sub-environments
        n = vec.problem._venv.num_envs
        pairs = {"vector": (BareVector(env_id, n), vec), "scalar": (rollout.Bare(env_id), rollout.Evolving(case))}
        pairs["scalar"][1].values = vec.values
        for bare, ours in pairs.values():
            bare.run(100, rollout.Tally())
            ours.run(rollout.Tally())
        measured.append((case, n, population, schedule, pairs))
    rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for case, n, population, schedule, pairs in measured:
            row: dict[str, Any] = {
                "env": case.env_id,
                "network": network,
                "num_envs": n,
                "popsize": case.popsize,
                "population": population,
                "schedule": schedule,
                "repeat": repeat,
            }
            for kind, (bare, ours) in pairs.items():
                result = rollout.compare(*rollout.measure(bare, ours, case.bare_steps, chunks))
                row |= {f"{kind}_{key}": value for key, value in result.items()}
            row["vec_over_gymne"] = round(row["vector_hpcne_steps_per_s"] / row["scalar_hpcne_steps_per_s"], 4)
            row["load"] = round(load.sample(), 2)
            rows.append(row)
            label = f"{case.env_id} N={n} popsize={case.popsize} {population} {schedule}"
            print(f"  {label}, repeat {repeat}: VecGymNE/bare vector {row['vector_ratio']:.0%}, "
                  f"VecGymNE/GymNE {row['vec_over_gymne']:.2f}", flush=True)  # fmt: skip
    write_csv(out, rows)
    table = []
    for case, n, population, schedule, _ in measured:
        mine = [r for r in rows if r["env"] == case.env_id and r["num_envs"] == n and r["popsize"] == case.popsize]
        mine = [r for r in mine if r["population"] == population and r["schedule"] == schedule]

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float:
            return statistics.median(float(r[key]) for r in mine)

        goal = GOAL_STEPS_PER_S.get(case.env_id)
        goals = (
            f"≥ 2 M/s {'met' if med('vector_hpcne_steps_per_s') >= goal else 'not met'}; "
            f"≥ 0.5 of bare vector {'met' if med('vector_ratio') >= 0.5 else 'not met'}"
            if goal
            else f"≥ GymNE {'met' if med('vec_over_gymne') >= 1 else 'not met'}"
        )
        table.append(
            [
                case.env_id,
                n,
                case.popsize,
                population,
                schedule if case.env_id.startswith("CartPole") else "(per-job resets)",
                f"{med('vector_hpcne_mean_episode_length'):.0f}",
                f"{med('scalar_bare_steps_per_s'):,.0f}",
                f"{med('scalar_hpcne_steps_per_s'):,.0f}",
                f"{med('vector_bare_steps_per_s'):,.0f}",
                f"{med('vector_hpcne_steps_per_s'):,.0f}",
                f"**{med('vector_ratio'):.2f}**",
                f"**{med('vec_over_gymne'):.1f}**",
                goals,
            ]
        )
    headers = [
        "environment",
        "N",
        "popsize",
        "population",
        "schedule",
        "mean episode",
        "bare env.step",
        "GymNE",
        "bare vector env",
        "VecGymNE",
        "VecGymNE ÷ bare vector",
        "VecGymNE ÷ GymNE",
        "goal",
    ]
    return (
        f"VecGymNE: one core, `{network}`, a population on N sub-environments (`max_num_envs=N`), "
        f"steps/s (VecGymNE's and GymNE's: steps of episodes only), medians of {repeats} repeats of {chunks} "
        "evaluations\n\n"
        + markdown_table(headers, table)
        + f"\n({load.describe()} during the runs; all repeats: {shown(out)})\n"
    )
