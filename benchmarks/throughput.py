"""Per-core throughput: steps/s of one worker evaluating a population, against bare ``env.step``, in one run.

The same run then measures VecGymNE against GymNE and the bare vector env loop (:mod:`benchmarks.vectorized`).

Reuses `benchmarks.rollout` (its ``Bare`` random-action loop, its ``Evolving`` serial ``GymNE.evaluate`` of a
fixed N(0, 1) population, its ``measure`` and ``compare``) on four environments (CartPole, Pendulum,
HalfCheetah, Humanoid) with the seed documents' MLP. Every population evaluation is sandwiched between two bare
chunks of about half its steps, ``chunks`` times per repeat, so that the load of a shared
machine falls on both alike; the ratio is taken within each repeat, and the table gives
medians over the repeats for wall-clock time and for this process's CPU time.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks import rollout
from benchmarks.common import LoadTracker, markdown_table, shown, write_csv
from benchmarks.examples import EXAMPLES, examples
from benchmarks.tasks import mlp
from benchmarks.vectorized import vectorized

__all__ = ["GOALS", "throughput"]

GOALS = {"CartPole-v1": 0.7, "Pendulum-v1": None, "HalfCheetah-v5": 0.9, "Humanoid-v5": 0.9}
# (env, popsize, episode_length, bare steps per chunk): each evaluation takes ~10-20k steps.
CASES = [
    ("CartPole-v1", 200, None, 2_000),
    ("Pendulum-v1", 50, None, 5_000),
    ("HalfCheetah-v5", 20, 1000, 10_000),
    ("Humanoid-v5", 200, 1000, 2_000),
]


def throughput(out: Path, *, repeats: int, chunks: int, quick: bool, hidden: int = 64) -> str:
    """Measure every environment; write the CSV and return the Markdown table."""
    import torch

    torch.set_num_threads(1)
    scale = 4 if quick else 1
    network = mlp(hidden)
    cases = [
        rollout.Case(
            env_id=env,
            network=network,
            popsize=max(popsize // scale, 2),
            episode_length=length,
            rollout_batch_size=None,  # hpcne's automatic choice
            bare_steps=bare_steps // scale,
        )
        for env, popsize, length, bare_steps in CASES
    ]
    load = LoadTracker()
    bares = {case.env_id: rollout.Bare(case.env_id) for case in cases}
    evolving = {case: rollout.Evolving(case) for case in cases}
    for case in cases:  # warm-up: environments, policy buffers, caches
        bares[case.env_id].run(100, rollout.Tally())
        evolving[case].run(rollout.Tally())
    rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for case in cases:
            bare, ours = rollout.measure(bares[case.env_id], evolving[case], case.bare_steps, chunks)
            rows.append(
                {
                    "env": case.env_id,
                    "network": network,
                    "popsize": case.popsize,
                    "repeat": repeat,
                    **rollout.compare(bare, ours),
                    "load": round(load.sample(), 2),
                }
            )
            print(f"  {case.env_id}, repeat {repeat}: hpcne/bare {rows[-1]['ratio']:.0%}", flush=True)
    write_csv(out, rows)
    table = []
    for case in cases:
        mine = [r for r in rows if r["env"] == case.env_id]

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float:
            return statistics.median(float(r[key]) for r in mine)

        goal = GOALS[case.env_id]
        ratios = [r["ratio"] for r in mine]
        table.append(
            [
                case.env_id,
                case.popsize,
                f"{med('bare_steps_per_s'):,.0f}",
                f"{med('hpcne_steps_per_s'):,.0f}",
                f"**{med('ratio'):.2f}**",
                f"{min(ratios):.2f}–{max(ratios):.2f}",
                f"{med('cpu_ratio'):.2f}",
                "–" if goal is None else f"≥ {goal} {'met' if med('ratio') >= goal else 'not met'}",
                f"{med('bare_mean_episode_length'):.0f} / {med('hpcne_mean_episode_length'):.0f}",
            ]
        )
    headers = [
        "environment",
        "popsize",
        "bare env.step steps/s",
        "hpcne steps/s",
        "hpcne ÷ bare",
        "range",
        "(CPU time)",
        "goal",
        "episode length bare / hpcne",
    ]
    vector_out = out.with_name(f"{out.stem}-vectorized{out.suffix}")
    example_rows = examples(
        out.with_name(f"{out.stem}-examples{out.suffix}"),
        names=list(EXAMPLES),
        layouts=[("1 worker", 1)],
        repeats=min(repeats, 2),
        quick=quick,
    )
    return (
        f"One core (one torch/BLAS thread, `num_actors=None`), `{network}`, N(0, 1) parameters, "
        f"{chunks} evaluations per repeat between bare chunks, medians of {repeats} repeats\n\n"
        + markdown_table(headers, table)
        + f"\n({load.describe()} during the runs; all repeats: {shown(out)})\n\n"
        + example_rows
        + "\n"
        + vectorized(vector_out, network, repeats=repeats, chunks=chunks, quick=quick)
    )
