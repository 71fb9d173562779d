"""``python -m benchmarks MEASURE [options]``: run one measure, print its Markdown, write its CSV.

Measures:

    throughput   per-core steps/s of hpcne vs bare env.step (CartPole, Pendulum, HalfCheetah, Humanoid),
                 the shipped example configs on one worker against the bare ceiling, with their time split,
                 then VecGymNE vs GymNE and the bare vector env (CartPole, HalfCheetah)
    rollout      per-core steps/s vs bare env.step per case or policy backend (its own options: rollout --help)
    parallel     parallel efficiency of each layout and the MPI coordinator's overhead (parallel --help)
    scaling      steps/s, efficiency and time split over 1-4 MPI ranks, then the HalfCheetah example on
                 N ranks and an N-worker pool against N bare loops at once
    examples     only the example-config rows (choose configs and layouts), against the random-action
                 ceiling and the replay ceiling (the run's own env calls replayed bare)
    evotorch     steps/s and s/generation, hpcne vs EvoTorch 0.6.1 (1 and 2 workers)
    solve        time and interactions to a target return, hpcne vs EvoTorch
    comm         bytes per generation and rank over MPI, measured, and a model to 1,000 ranks
    scale        centralized vs distributed PGPE up to 10^6 parameters: time split, bytes, peak RSS, model
    machine      the machine and versions (for docs/BENCHMARKS.md)
    setup        create the EvoTorch virtual environment (.bench/evotorch-venv) only

Each writes ``.bench/results/MEASURE.csv`` (``--out`` to change) and the same Markdown it prints
to ``.bench/results/MEASURE.md``. ``--quick`` is a smoke run (10-50 s per measure).

Tools for one run, each printing JSON lines: ``python -m benchmarks.replay record|replay|alternate``
(a run's env calls, logged and replayed bare) and ``python -m benchmarks.engine CONFIG`` (hpcne's
own cost per step).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine_notes
from benchmarks.examples import EXAMPLES
from benchmarks.tasks import SOLVE_TASKS, SPEED_TASKS

RESULTS = ROOT / ".bench" / "results"


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_list(text: str) -> list[int]:
    return [int(item) for item in _csv_list(text)]


def _tasks(known: dict[str, object]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = _csv_list(text)
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose among {', '.join(known)}; got {text!r}")
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per measure."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="measure", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--quick", action="store_true", help="a smoke run: fewer repeats, smaller runs")
        command.add_argument("--out", type=Path, default=None, help=f"CSV file (default {RESULTS}/{name}.csv)")
        return command

    def add_tasks(command: argparse.ArgumentParser, known: dict[str, Any], default: str) -> None:
        help_text = f"default {default}; among {', '.join(known)}"
        command.add_argument("--tasks", type=_tasks(known), default=None, help=help_text)

    command = add("throughput", "per-core steps/s vs bare env.step, the example configs, then VecGymNE (14-16 min)")
    command.add_argument("--repeats", type=int, default=3)
    command.add_argument("--chunks", type=int, default=3, help="evaluations per repeat, each between bare chunks")

    command = add("examples", "the example configs against the machine's ceiling, with the time split")
    command.add_argument("--configs", type=_tasks(EXAMPLES), default=None, help=f"among {', '.join(EXAMPLES)}")
    command.add_argument(
        "--layouts", type=_csv_list, default=["1"], help="1 (one worker), mpiN, poolN; e.g. 1,mpi2,pool2"
    )
    command.add_argument("--repeats", type=int, default=1)

    command = add("scaling", "1-4 MPI ranks: steps/s, efficiency, time split; the example on N (8-10 min)")
    add_tasks(command, SPEED_TASKS, "halfcheetah,cartpole")
    command.add_argument("--ranks", type=_int_list, default=[1, 2, 3, 4])
    command.add_argument("--processes", type=int, default=None, help="N for the example rows (default: cores)")
    command.add_argument("--repeats", type=int, default=3)
    command.add_argument("--generations", type=int, default=None, help="timed generations (default per task)")

    command = add("evotorch", "hpcne vs EvoTorch: steps/s and s/generation (8-14 min, + EvoTorch install once)")
    add_tasks(command, SPEED_TASKS, "cartpole,cartpole-balancing,halfcheetah")
    command.add_argument("--workers", type=_int_list, default=[1, 2])
    command.add_argument("--repeats", type=int, default=2)
    command.add_argument("--generations", type=int, default=None, help="timed generations (default per task)")
    command.add_argument("--ray-single", action="store_true", help="also run EvoTorch with one Ray actor")

    command = add("solve", "hpcne vs EvoTorch: time to a target return (4-6 min)")
    add_tasks(command, SOLVE_TASKS, "cartpole,hopper")
    command.add_argument("--seeds", type=_int_list, default=[1])
    command.add_argument("--workers", type=int, default=1, help="1: in-process both; N: MPI vs Ray")
    command.add_argument("--max-seconds", type=float, default=240.0, help="budget per run")
    command.add_argument("--max-generations", type=int, default=None, help="override the tasks' budgets")

    command = add("comm", "MPI bytes per generation and rank, and a model to 1,000 ranks (30 s)")
    command.add_argument("--ranks", type=_int_list, default=[2, 3, 4])

    command = add("scale", "centralized vs distributed PGPE on 10^4-10^6 parameters (quick: 1 min; full: ~1 h)")
    command.add_argument("--params", type=_int_list, default=[10_000, 100_000, 1_000_000])
    command.add_argument("--popsizes", type=_int_list, default=[400, 4000])
    command.add_argument("--ranks", type=_int_list, default=[1, 2, 3])
    command.add_argument("--generations", type=int, default=2, help="timed generations after one warm-up")

    for name, help_text in (
        ("rollout", "per-core rollout throughput per case or policy backend (options: rollout --help)"),
        ("parallel", "parallel efficiency and MPI coordinator overhead (options: parallel --help)"),
    ):
        sub.add_parser(name, help=help_text, add_help=False)  # main() hands their options to them
    sub.add_parser("machine", help="print the machine and versions")
    sub.add_parser("setup", help="create the EvoTorch virtual environment only")
    return parser


SPEED_GENERATIONS = {"cartpole": 3, "cartpole-balancing": 1, "halfcheetah": 3, "halfcheetah-obsnorm": 3}
SCALING_GENERATIONS = {"cartpole": 10, "halfcheetah": 3}


def _beside(out: Path, name: str) -> Path:
    """``out``'s sibling file for a second table of the same measure (``scaling-examples.csv``)."""
    return out.with_name(f"{out.stem}-{name}{out.suffix}")


def run(args: argparse.Namespace) -> str:
    """Run the chosen measure; return its Markdown."""
    out = getattr(args, "out", None) or RESULTS / f"{args.measure}.csv"
    if args.measure == "throughput":
        from benchmarks.throughput import throughput

        repeats, chunks = (1, 1) if args.quick else (args.repeats, args.chunks)
        return throughput(out, repeats=repeats, chunks=chunks, quick=args.quick)
    if args.measure == "scaling":
        from benchmarks.examples import examples
        from benchmarks.scaling import scaling

        tasks = args.tasks or (["cartpole"] if args.quick else ["halfcheetah", "cartpole"])
        generations = {t: args.generations or (1 if args.quick else SCALING_GENERATIONS.get(t, 3)) for t in tasks}
        repeats = 1 if args.quick else args.repeats
        n = args.processes or os.cpu_count() or 1
        return scaling(out, tasks=tasks, ranks=args.ranks, repeats=repeats, generations=generations) + examples(
            _beside(out, "examples"),
            names=["halfcheetah-pgpe"],
            layouts=[("1 worker", 1), ("mpi", n), ("pool", n)],
            repeats=1 if args.quick else 2,
            quick=args.quick,
        )
    if args.measure == "examples":
        from benchmarks.examples import examples, parse_layout

        return examples(
            out,
            names=args.configs or list(EXAMPLES),
            layouts=[parse_layout(text) for text in args.layouts],
            repeats=args.repeats,
            quick=args.quick,
        )
    if args.measure == "evotorch":
        from benchmarks.compare import evotorch_speed

        tasks = args.tasks or (["cartpole"] if args.quick else ["cartpole", "cartpole-balancing", "halfcheetah"])
        generations = {t: args.generations or (1 if args.quick else SPEED_GENERATIONS.get(t, 3)) for t in tasks}
        return evotorch_speed(
            out,
            tasks=tasks,
            workers=args.workers,
            repeats=1 if args.quick else args.repeats,
            generations=generations,
            ray_single=args.ray_single,
        )
    if args.measure == "solve":
        from benchmarks.compare import time_to_solve

        return time_to_solve(
            out,
            tasks=args.tasks or (["cartpole"] if args.quick else ["cartpole", "hopper"]),
            seeds=args.seeds,
            workers=args.workers,
            max_seconds=30.0 if args.quick else args.max_seconds,
            max_generations=3 if args.quick else args.max_generations,
        )
    if args.measure == "comm":
        from benchmarks.commvolume import comm_volume

        return comm_volume(out, ranks=[2] if args.quick else args.ranks, quick=args.quick)
    if args.measure == "scale":
        from benchmarks.scale import scale

        if args.quick:
            return scale(out, params=[10_000, 100_000], popsizes=[400], ranks=[1, 3], generations=1)
        return scale(out, params=args.params, popsizes=args.popsizes, ranks=args.ranks, generations=args.generations)
    if args.measure == "setup":
        from benchmarks.evotorch_venv import ensure_evotorch_venv

        return f"EvoTorch environment: {ensure_evotorch_venv()}\n"
    return machine_notes() + "\n"


def main() -> None:
    """Parse, run, print and save the Markdown."""
    if sys.argv[1:2] in (["rollout"], ["parallel"]):  # measures with their own options and tables
        from benchmarks import parallel, rollout

        {"rollout": rollout, "parallel": parallel}[sys.argv[1]].main(sys.argv[2:])
        return
    args = build_parser().parse_args()
    if args.measure in ("machine", "setup"):
        print(run(args), end="", flush=True)
        return
    command = "python -m benchmarks " + shlex.join(sys.argv[1:])
    started = time.perf_counter()
    body = run(args)
    minutes = (time.perf_counter() - started) / 60
    text = f"`{command}` ({minutes:.1f} min)\n\n{body}\nMachine: {machine_notes()}\n"
    markdown = (args.out or RESULTS / f"{args.measure}.csv").with_suffix(".md")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
