"""Single-core rollout throughput of hpcne against the bare environment, measured in the same run.

For each case the script compares

(a) the bare environment: ``env.step`` with random actions (sampled beforehand) in a plain
    loop on a ``gymnasium.make`` environment, resetting when an episode ends;
(b) hpcne: ``GymNE.evaluate`` on a fixed population of N(0, 1) parameter vectors, serially
    (``num_actors=None``) with one torch/BLAS thread; steps/s = interaction_count / seconds.

The two are interleaved finely so that the load of a shared machine affects both alike: every
population evaluation is sandwiched between two bare chunks, ``--chunks`` times per repeat. The
ratio hpcne/bare is taken within each repeat; the table shows medians over ``--repeats``, for
wall-clock time and for the CPU time of this process. Every repeat goes to the CSV file given
by ``--out``.

With ``--backends numpy,torch,vmap,loop`` the cases are instead CartPole-v1 and HalfCheetah-v5
with the seed MLP ``Linear(obs_length, 64) >> Tanh() >> Linear(64, act_length)`` and the default
``rollout_batch_size``, once per GymNE ``policy_backend`` named.

Usage::

    python -m benchmarks rollout --out bench_rollout.csv [--repeats 5] [--chunks 4] [--quick]
    python -m benchmarks rollout --out bench_backends.csv --backends numpy,torch,vmap,loop
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
from hpcne.neuroevolution.policies import POLICY_BACKENDS  # noqa: E402

CARTPOLE_NET = "Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)"
CHEETAH_NET = "Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)"
SEED_NET = "Linear(obs_length, 64) >> Tanh() >> Linear(64, act_length)"  # the seed documents' MLP


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    env_id: str
    network: str
    popsize: int
    episode_length: int | None
    rollout_batch_size: int | None
    bare_steps: int  # per bare chunk (two chunks per evaluation)
    policy_backend: str = "auto"

    @property
    def label(self) -> str:
        """Human-readable name."""
        rbs = "auto" if self.rollout_batch_size is None else str(self.rollout_batch_size)
        backend = "" if self.policy_backend == "auto" else f" policy_backend={self.policy_backend}"
        return f"{self.env_id} popsize={self.popsize} rollout_batch_size={rbs}{backend}"


@dataclass
class Tally:
    """Steps, episodes and seconds accumulated over the chunks of one repeat."""

    steps: int = 0
    episodes: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def add(self, steps: int, episodes: int, wall: float, cpu: float) -> None:
        """Add one measured chunk."""
        self.steps += steps
        self.episodes += episodes
        self.wall += wall
        self.cpu += cpu


def measure(bare: Bare, evolving: Evolving, bare_steps: int, chunks: int) -> tuple[Tally, Tally]:
    """One repeat: ``chunks`` population evaluations, each between two bare chunks of ``bare_steps``."""
    bare_tally, ours = Tally(), Tally()
    for _ in range(chunks):
        bare.run(bare_steps, bare_tally)
        evolving.run(ours)
        bare.run(bare_steps, bare_tally)
    return bare_tally, ours


def compare(bare: Tally, ours: Tally) -> dict[str, float | int]:
    """The measured columns of one repeat: steps, steps/s and hpcne / bare, by wall clock and CPU time."""
    return {
        "bare_steps": bare.steps,
        "hpcne_steps": ours.steps,
        "bare_steps_per_s": round(bare.steps / bare.wall, 1),
        "hpcne_steps_per_s": round(ours.steps / ours.wall, 1),
        "ratio": round((ours.steps / ours.wall) / (bare.steps / bare.wall), 4),
        "bare_steps_per_cpu_s": round(bare.steps / bare.cpu, 1),
        "hpcne_steps_per_cpu_s": round(ours.steps / ours.cpu, 1),
        "cpu_ratio": round((ours.steps / ours.cpu) / (bare.steps / bare.cpu), 4),
        "bare_mean_episode_length": round(bare.steps / max(bare.episodes, 1), 1),
        "hpcne_mean_episode_length": round(ours.steps / max(ours.episodes, 1), 1),
    }


def cases(quick: bool) -> list[Case]:
    """The configurations to measure (smaller ones with ``quick``)."""
    scale = 4 if quick else 1
    return [
        Case("CartPole-v1", CARTPOLE_NET, 200 // scale, None, None, 2_000 // scale),
        Case("CartPole-v1", CARTPOLE_NET, 200 // scale, None, 1, 2_000 // scale),
        Case("HalfCheetah-v5", CHEETAH_NET, 20 // scale, 1000, None, 10_000 // scale),
        Case("HalfCheetah-v5", CHEETAH_NET, 20 // scale, 1000, 4, 10_000 // scale),
    ]


def backend_cases(quick: bool, backends: list[str]) -> list[Case]:
    """The seed MLP on CartPole-v1 and HalfCheetah-v5, once per policy backend."""
    scale = 4 if quick else 1
    return [
        case
        for backend in backends
        for case in (
            Case("CartPole-v1", SEED_NET, 200 // scale, None, None, 2_000 // scale, backend),
            Case("HalfCheetah-v5", SEED_NET, 20 // scale, 1000, None, 10_000 // scale, backend),
        )
    ]


class Bare:
    """A plain random-action loop on one environment."""

    def __init__(self, env_id: str) -> None:
        self.env = gym.make(env_id)
        self.env.action_space.seed(0)
        self.env.reset(seed=0)

    def run(self, steps: int, tally: Tally) -> None:
        """Take ``steps`` random steps (actions sampled before the clock starts)."""
        env = self.env
        actions = [env.action_space.sample() for _ in range(steps)]
        episodes = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
                episodes += 1
        tally.add(steps, episodes, time.perf_counter() - wall, time.process_time() - cpu)


class Evolving:
    """GymNE (or the ``problem`` given, e.g. a VecGymNE) evaluating one fixed population, serially."""

    def __init__(self, case: Case, problem: GymNE | None = None) -> None:
        self.problem = problem or GymNE(
            case.env_id,
            case.network,
            num_actors=None,
            seed=0,
            episode_length=case.episode_length,
            rollout_batch_size=case.rollout_batch_size,
            policy_backend=case.policy_backend,
        )
        generator = torch.Generator().manual_seed(0)
        self.values = torch.randn((case.popsize, self.problem.solution_length), generator=generator)
        self.batch = self.problem.generate_batch(case.popsize)

    def run(self, tally: Tally) -> None:
        """Evaluate the population once."""
        problem = self.problem
        self.batch.set_values(self.values)
        steps, episodes = problem.interaction_count, problem.episode_count
        wall, cpu = time.perf_counter(), time.process_time()
        problem.evaluate(self.batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        tally.add(problem.interaction_count - steps, problem.episode_count - episodes, wall, cpu)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and write the CSV."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks rollout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="CSV file for all measurements")
    parser.add_argument("--repeats", type=int, default=5, help="repeats, each giving one ratio (default 5)")
    parser.add_argument("--chunks", type=int, default=4, help="evaluations per repeat, each between bare chunks")
    parser.add_argument("--quick", action="store_true", help="smaller populations and loops, for a smoke test")
    parser.add_argument("--only", help="run only the cases whose label contains this text, e.g. HalfCheetah")
    parser.add_argument(
        "--backends",
        help=f"compare GymNE policy backends ({', '.join(POLICY_BACKENDS)}; comma-separated) on the seed MLP",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in backends if b not in POLICY_BACKENDS]
        if unknown or not backends:
            parser.error(f"--backends takes names among {', '.join(POLICY_BACKENDS)}; got {args.backends!r}")
        chosen = backend_cases(args.quick, backends)
        chosen.sort(key=lambda case: case.env_id)  # one table block per environment
    else:
        chosen = cases(args.quick)
    all_cases = [case for case in chosen if args.only is None or args.only in case.label]
    bares = {case.env_id: Bare(case.env_id) for case in all_cases}
    evolving = {case: Evolving(case) for case in all_cases}
    for case in all_cases:  # warm up: environments, policy buffers, caches
        bares[case.env_id].run(100, Tally())
        evolving[case].run(Tally())

    rows: list[dict[str, object]] = []
    for repeat in range(args.repeats):
        for case in all_cases:
            bare, ours = measure(bares[case.env_id], evolving[case], case.bare_steps, args.chunks)
            row = {
                "case": case.label,
                "env": case.env_id,
                "popsize": case.popsize,
                "rollout_batch_size": case.rollout_batch_size or "auto",
                "policy_backend": case.policy_backend,
                "network": case.network,
                "repeat": repeat,
                **compare(bare, ours),
            }
            rows.append(row)
            print(
                f"repeat {repeat}: {case.label}: bare {row['bare_steps_per_s']:,.0f} steps/s, "
                f"hpcne {row['hpcne_steps_per_s']:,.0f} steps/s ({row['ratio']:.0%}; per CPU second "
                f"{row['cpu_ratio']:.0%})",
                flush=True,
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    width = max(50, *(len(case.label) for case in all_cases))
    header = (
        f"{'case':<{width}} {'bare steps/s':>13} {'hpcne steps/s':>14} {'hpcne/bare':>11} {'(CPU time)':>11} "
        f"{'episode length bare/hpcne':>26}"
    )
    print(f"\nMedians over {args.repeats} repeats (single core):\n{header}\n{'-' * len(header)}")
    for case in all_cases:
        mine = [r for r in rows if r["case"] == case.label]

        def median(key: str, rows: list[dict[str, object]] = mine) -> float:
            return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]

        lengths = f"{median('bare_mean_episode_length'):.0f} / {median('hpcne_mean_episode_length'):.0f}"
        print(
            f"{case.label:<{width}} {median('bare_steps_per_s'):>13,.0f} {median('hpcne_steps_per_s'):>14,.0f} "
            f"{median('ratio'):>10.0%} {median('cpu_ratio'):>10.0%} {lengths:>26}"
        )
    print(f"\nAll measurements: {args.out}")


if __name__ == "__main__":
    main()
