"""The shipped example configs as users run them, against the machine's own ceiling, with the time split.

Each row runs ``hpcne train examples/NAME.toml`` as it is (its popsize, observation
normalization, centre evaluations, checkpoints and logging) for a few generations, in one of
three layouts: one in-process worker (``--workers 1``), ``mpiexec -n N`` and a pool of N
workers (``--workers N``). Its steps/s is the steady state read from the run's results file
(interactions and wall time of the generations after the warm-up ones). The ceiling is measured
in the same run, just before and just after: N bare loops at once (``env.step`` with random
actions on a ``gymnasium.make`` environment, one process each), their summed steps/s averaged.

Random actions are not what a policy does, and a MuJoCo step costs what its states cost. So each
row also has a *replay ceiling*: the same run is recorded once per example (every env call of
the rollout engine, benchmarks/replay.py), and N processes at once replay those calls in fresh
environments with nothing else in between. What the run's time exceeds the replay's by is
hpcne's: policy calls, normalization, the engine, communication, the update, logging. The
replay also counts the centre evaluations' steps, which the run makes but does not count as
training interactions: *all env steps ÷ ceiling* is the run's env.step throughput, both kinds
of step, against the random-action ceiling.

Steps per CPU second (the run's processes against a bare loop's) come from the CPU time of a
run of the warm-up generations alone and of the full run: they vary far less with the load of a
shared machine than wall-clock rates. The example's target reward is lifted (``--target-reward
1e30``) so that every generation asked for runs.

A third run of the same command with ``HPCNE_PROFILE`` set gives the time split of every
process (hpcne/timing.py): env.step, resets, policy calls, observation normalization, the
engine's own bookkeeping, the searcher update, logging, checkpoints and centre evaluations, and
communication (what those leave of N processes × the wall time: messages and waiting). The
same split is also given per process (each MPI rank, the pool's coordinator and each worker),
in milliseconds a generation, so that what one rank does while the others wait shows; the
per-process rows go to ``OUT-processes.csv`` beside the CSV of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ONE_THREAD,
    ROOT,
    LoadTracker,
    markdown_table,
    median,
    mpiexec,
    run_json,
    shown,
    write_csv,
)

__all__ = ["EXAMPLES", "PHASES", "examples", "parse_layout"]

# example -> (environment, timed generations, warm-up generations, bare seconds per process)
EXAMPLES = {
    "cartpole-pgpe": ("CartPole-v1", 40, 5, 6.0),
    "pendulum-pgpe": ("Pendulum-v1", 40, 4, 6.0),
    "halfcheetah-pgpe": ("HalfCheetah-v5", 5, 1, 10.0),
    "humanoid-pgpe": ("Humanoid-v5", 8, 2, 10.0),
}
PHASES = [
    "env.step",
    "env.reset",
    "policy",
    "obs-norm",
    "engine",
    "communication",
    "searcher update",
    "logging",
    "checkpoint",
    "centre evaluation",
]
LAYOUTS = ("1 worker", "mpi", "pool")


def parse_layout(text: str) -> tuple[str, int]:
    """``"1"`` (one in-process worker), ``"mpiN"`` or ``"poolN"`` as (layout, processes)."""
    for layout in ("mpi", "pool"):
        if text.startswith(layout) and text[len(layout) :].isdigit() and int(text[len(layout) :]) >= 1:
            return layout, int(text[len(layout) :])
    if text == "1":
        return "1 worker", 1
    raise argparse.ArgumentTypeError(f"a layout is 1, mpiN or poolN (e.g. mpi2); got {text!r}")


def bare(env_id: str, seconds: float) -> tuple[float, float]:
    """Steps per second and per CPU second of random actions on a ``gymnasium.make`` environment (one process)."""
    import gymnasium as gym

    from hpcne.neuroevolution.quiet import quiet_env_libraries

    quiet_env_libraries(env_id)
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(1024)]
    steps, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    return steps / (time.perf_counter() - started), steps / (time.process_time() - cpu)


def at_once(command: list[str], processes: int, timeout: float) -> list[dict[str, Any]]:
    """Run ``processes`` copies of ``command`` at once; the last JSON line each printed."""
    env = {**os.environ, **ONE_THREAD}
    pipe = subprocess.PIPE
    running = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=pipe, text=True) for _ in range(processes)]
    records = []
    for process in running:
        out, _ = process.communicate(timeout=timeout)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode}).")
        records.append(json.loads(out.strip().splitlines()[-1]))
    return records


def ceiling(env_id: str, processes: int, seconds: float) -> list[tuple[float, float]]:
    """Steps per second and per CPU second of each of ``processes`` bare loops run at once."""
    command = [sys.executable, "-m", "benchmarks.examples", "bare", env_id, str(seconds)]
    records = at_once(command, processes, seconds * 10 + 120)
    return [(float(r["steps_per_s"]), float(r["steps_per_cpu_s"])) for r in records]


def replay_ceiling(log: Path, first_round: int, processes: int) -> list[tuple[float, float, float]]:
    """Steps per second and per CPU second of each of ``processes`` replays of a run's env calls at once,
    and the run's env steps per training step (centre evaluations' steps are the rest).

    Raises:
        RuntimeError: A replay did not reproduce the recorded rewards and observations.
    """
    command = [sys.executable, "-m", "benchmarks.replay", "replay", str(log), "--first-round", str(first_round)]
    records = at_once(command, processes, 3600)
    if not all(r["same_trajectories"] for r in records):
        raise RuntimeError(
            f"Replaying {log} did not reproduce the run's trajectories; its figures would not be the run's."
        )
    return [(float(r["steps_per_s"]), float(r["steps_per_cpu_s"]), r["all_steps"] / r["steps"]) for r in records]


def record(example: str, generations: int, out: Path) -> None:
    """Log the env calls of ``hpcne train examples/EXAMPLE.toml`` over ``generations`` (benchmarks.replay)."""
    config = ROOT / "examples" / f"{example}.toml"
    command = [sys.executable, "-m", "benchmarks.replay", "record", str(config), str(generations), str(out)]
    run_json(command, timeout=3600)


def train_command(example: str, layout: str, processes: int, generations: int, run_dir: Path) -> list[str]:
    """``hpcne train examples/EXAMPLE.toml`` in ``layout`` with ``processes`` workers or ranks."""
    hpcne = [sys.executable, "-m", "hpcne", "train", str(ROOT / "examples" / f"{example}.toml")]
    # No early stop at the example's target reward: the steady state needs every generation asked for.
    options = ["--generations", str(generations), "--run-dir", str(run_dir), "--target-reward", "1e30"]
    if layout == "mpi":
        return [mpiexec(), "-n", str(processes), sys.executable, "-m", "mpi4py", *hpcne[1:], *options]
    return [*hpcne, *options, "--workers", str(processes if layout == "pool" else 1)]


def train(command: list[str], profile: Path | None, timeout: float = 1800) -> float:
    """Run one training command (with ``HPCNE_PROFILE=profile`` when given); return the CPU seconds it used."""
    env = {**os.environ, **ONE_THREAD, "MPIEXEC_TIMEOUT": str(int(timeout))}
    env.pop("HPCNE_PROFILE", None)
    if profile is not None:
        env["HPCNE_PROFILE"] = str(profile)
    before = _children_cpu()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return _children_cpu() - before


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (and theirs: mpiexec's ranks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _interactions(run_dir: Path) -> int:
    import h5py

    with h5py.File(run_dir / "results.h5", "r") as f:
        return int(f["log"]["interaction_count"][-1])


def steady_rate(run_dir: Path, warmup: int) -> tuple[float, int, float]:
    """Interactions per second after the first ``warmup`` generations, their number and seconds (results.h5)."""
    import h5py

    with h5py.File(run_dir / "results.h5", "r") as f:
        log = f["log"]
        interactions, wall = log["interaction_count"][:], log["wall_time"][:]
    steps, seconds = int(interactions[-1] - interactions[warmup - 1]), float(wall[-1] - wall[warmup - 1])
    return steps / seconds, steps, seconds


def _booked(record: dict[str, Any], skip_rounds: int) -> dict[str, float]:
    """One process's seconds per phase (communication left at 0), rounds before ``skip_rounds`` left out."""
    booked = dict.fromkeys(PHASES, 0.0)
    for key, phases in record["seconds"].items():
        if key.isdigit() and int(key) >= skip_rounds:
            for name, seconds in phases.items():
                if name != "communication":
                    booked[name] = booked.get(name, 0.0) + seconds
    return booked


def split(profile: Path, skip_rounds: int, capacity: float) -> dict[str, float]:
    """Shares of ``capacity`` (processes × seconds) per phase, rounds before ``skip_rounds`` left out.

    ``communication`` is what the other phases leave of the capacity: messages, and processes
    waiting for work (a pool's coordinator, which does not evaluate, only adds its own phases).
    """
    totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    for path in profile.glob("phases-*.json"):
        for name, seconds in _booked(json.loads(path.read_text()), skip_rounds).items():
            totals[name] = totals.get(name, 0.0) + seconds
    totals["communication"] = max(0.0, capacity - sum(totals.values()))
    whole = sum(totals.values())
    return {name: seconds / whole for name, seconds in totals.items()} | {"total_seconds": whole}


def per_process(profile: Path, skip_rounds: int, seconds: float, generations: int) -> list[dict[str, Any]]:
    """Each process's milliseconds a generation per phase, rounds before ``skip_rounds`` left out.

    ``seconds`` is the wall time of the ``generations`` after the warm-up; a process's
    ``communication`` is what its own phases leave of it (its messages, and its waiting for the
    others). Processes are named ``rank R`` under MPI, else ``coordinator`` and ``worker K``.
    """
    records = [json.loads(path.read_text()) for path in profile.glob("phases-*.json")]
    records.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["role"] != "coordinator", r["pid"]))
    rows, workers = [], 0
    for record in records:
        if record["rank"] is not None:
            name = f"rank {record['rank']}"
        elif record["role"] == "coordinator":
            name = "coordinator"
        else:
            workers += 1
            name = f"worker {workers}"
        booked = _booked(record, skip_rounds)
        booked["communication"] = max(0.0, seconds - sum(booked.values()))
        rows.append({"process": name} | {phase: 1000 * spent / generations for phase, spent in booked.items()})
    return rows


def measure(example: str, layout: str, processes: int, quick: bool, log: Path) -> dict[str, Any]:
    """One row: the ceiling before and after, the plain run's steady steps/s, the profiled run's split.

    ``log`` holds the env calls of the same run (:func:`record`); N replays of it at once, after
    the plain run, give the replay ceiling: what the environments alone need for the run's steps.

    Steps per CPU second (all of the run's processes, mpiexec's included) are taken from a run of
    the warm-up generations alone and the full run: their difference is the steady state. On a
    shared machine they vary far less with the load than wall-clock rates do.
    """
    env_id, generations, warmup, seconds = EXAMPLES[example]
    if quick:
        generations, warmup, seconds = max(2, generations // 4), 1, 2.0
    n = processes if layout != "1 worker" else 1
    before = ceiling(env_id, n, seconds)
    with tempfile.TemporaryDirectory(prefix="hpcne-examples-") as tmp:
        warm_dir, run_dir = Path(tmp) / "warm", Path(tmp) / "run"
        warm_cpu = train(train_command(example, layout, n, warmup, warm_dir), None)
        run_cpu = train(train_command(example, layout, n, generations + warmup, run_dir), None)
        rate, _, _ = steady_rate(run_dir, warmup)
        # A start-up's CPU time varies by more than a --quick run's few generations take: no figure then.
        steady_cpu = run_cpu - warm_cpu
        cpu_rate = (_interactions(run_dir) - _interactions(warm_dir)) / steady_cpu if steady_cpu > 0 else float("nan")
        after = ceiling(env_id, n, seconds)
        replayed = replay_ceiling(log, warmup, n)
        profiled_dir, profile = Path(tmp) / "profiled", Path(tmp) / "phases"
        train(train_command(example, layout, n, generations + warmup, profiled_dir), profile)
        profiled_rate, _, profiled_seconds = steady_rate(profiled_dir, warmup)
        shares = split(profile, warmup, n * profiled_seconds)
        processes = per_process(profile, warmup, profiled_seconds, generations)
    ceiling_rate = (sum(r[0] for r in before) + sum(r[0] for r in after)) / 2
    bare_cpu_rate = statistics.mean(r[1] for r in before + after)
    replay_rate, replay_cpu_rate = sum(r[0] for r in replayed), statistics.mean(r[1] for r in replayed)
    return {
        "example": example,
        "env": env_id,
        "layout": layout if layout == "1 worker" else f"{layout} {n}",
        "processes": n,
        "ceiling_steps_per_s": round(ceiling_rate, 1),
        "bare_per_process": round(ceiling_rate / n, 1),
        "replay_ceiling_steps_per_s": round(replay_rate, 1),
        "hpcne_steps_per_s": round(rate, 1),
        "ratio": round(rate / ceiling_rate, 4),
        "all_steps_ratio": round(rate * replayed[0][2] / ceiling_rate, 4),
        "replay_ratio": round(rate / replay_rate, 4),
        "bare_steps_per_cpu_s": round(bare_cpu_rate, 1),
        "replay_steps_per_cpu_s": round(replay_cpu_rate, 1),
        "hpcne_steps_per_cpu_s": round(cpu_rate, 1),
        "cpu_ratio": round(cpu_rate / bare_cpu_rate, 4),
        "replay_cpu_ratio": round(cpu_rate / replay_cpu_rate, 4),
        "profiled_steps_per_s": round(profiled_rate, 1),
        **{f"share_{name}": round(shares[name], 4) for name in PHASES},
        "split_seconds": round(shares["total_seconds"], 2),
        "per_process": processes,
    }


def examples(out: Path, *, names: list[str], layouts: list[tuple[str, int]], repeats: int, quick: bool) -> str:
    """Measure every (example, layout); write the CSV and return the Markdown tables."""
    load = LoadTracker()
    rows: list[dict[str, Any]] = []
    processes: list[dict[str, Any]] = []  # one per process of each run: its ms a generation per phase
    with tempfile.TemporaryDirectory(prefix="hpcne-replay-") as logs:
        for repeat in range(repeats):
            for name in names:
                log = Path(logs) / f"{name}.npz"
                if not log.exists():  # one recording per example: the run is the same in every layout
                    _, generations, warmup, _ = EXAMPLES[name]
                    record(name, max(2, generations // 4) + 1 if quick else generations + warmup, log)
                for layout, count in layouts:
                    row = measure(name, layout, count, quick, log)
                    tag = {"example": name, "layout": row["layout"], "repeat": repeat}
                    processes += [tag | process for process in row.pop("per_process")]
                    rows.append(row | {"repeat": repeat, "load": round(load.sample(), 2)})
                    print(
                        f"  {name}, {row['layout']}, repeat {repeat}: {row['ratio']:.2f} of the ceiling, "
                        f"{row['replay_ratio']:.2f} of the replay ceiling",
                        flush=True,
                    )
    write_csv(out, rows)
    write_csv(out.with_name(f"{out.stem}-processes{out.suffix}"), processes)
    return (
        _tables(rows, repeats)
        + _process_table(processes, repeats)
        + f"\n({load.describe()} during the runs; all runs: {shown(out)})\n"
    )


def _process_table(processes: list[dict[str, Any]], repeats: int) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in processes:
        groups.setdefault((row["example"], row["layout"], row["process"]), []).append(row)
    lines = [
        [f"`{name}`", layout, process]
        + [f"{median(float(r[p]) for r in mine):.1f}" for p in PHASES]
        + [f"{sum(median(float(r[p]) for r in mine) for p in PHASES):.1f}"]
        for (name, layout, process), mine in groups.items()
    ]
    return (
        f"\nThe same split per process, ms a generation after the warm-up (medians of {repeats} run(s)); "
        "communication is what the process's own phases leave of the generation: its messages and its waiting\n\n"
        + markdown_table(["config", "layout", "process", *PHASES, "generation"], lines)
    )


def _tables(rows: list[dict[str, Any]], repeats: int) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["example"], row["layout"]), []).append(row)
    speed, shares = [], []
    for (name, layout), mine in groups.items():

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float:
            return median(float(r[key]) for r in mine)

        def spread(key: str, mine: list[dict[str, Any]] = mine) -> str:
            values = [float(r[key]) for r in mine]
            return f"{min(values):.2f}–{max(values):.2f}"

        speed.append(
            [
                f"`examples/{name}.toml`",
                layout,
                f"{med('bare_per_process'):,.0f}",
                f"{med('ceiling_steps_per_s'):,.0f}",
                f"{med('replay_ceiling_steps_per_s'):,.0f}",
                f"{med('hpcne_steps_per_s'):,.0f}",
                f"**{med('ratio'):.2f}** ({spread('ratio')})",
                f"{med('all_steps_ratio'):.2f}",
                f"**{med('replay_ratio'):.2f}** ({spread('replay_ratio')})",
                f"{med('cpu_ratio'):.2f}",
                f"{med('replay_cpu_ratio'):.2f}",
            ]
        )
        shares.append([f"`{name}`", layout] + [f"{100 * med(f'share_{p}'):.1f}" for p in PHASES])
    return (
        f"Shipped example configs as they are (`hpcne train examples/NAME.toml`), steady state after the warm-up "
        f"generations, medians of {repeats} run(s) (range in brackets); ceiling = the summed steps/s of as many "
        "bare `env.step` loops with random actions at once, measured just before and after; replay ceiling = as "
        "many processes at once each replaying the run's own env calls (its training steps over the time of its "
        "calls, centre evaluations' included); all env steps = hpcne's training steps and its centre evaluations' "
        "steps per second (their count from the replay)\n\n"
        + markdown_table(
            [
                "config",
                "layout",
                "bare steps/s per process",
                "ceiling (steps/s)",
                "replay ceiling (steps/s)",
                "hpcne steps/s",
                "hpcne ÷ ceiling",
                "all env steps ÷ ceiling",
                "hpcne ÷ replay ceiling",
                "per CPU s: hpcne ÷ bare",
                "per CPU s: hpcne ÷ replay",
            ],
            speed,
        )
        + "\nTime split of a profiled run of the same command (`HPCNE_PROFILE`): % of the evaluating processes' "
        "time after the warm-up (N processes × wall time); communication is what the other phases leave: "
        "messages and waiting\n\n" + markdown_table(["config", "layout", *PHASES], shares)
    )


def main() -> None:
    """``bare ENV SECONDS``: one bare loop, prints a JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.examples")
    parser.add_argument("what", choices=["bare"])
    parser.add_argument("env")
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    wall, cpu = bare(args.env, args.seconds)
    print(json.dumps({"steps_per_s": wall, "steps_per_cpu_s": cpu}), flush=True)


if __name__ == "__main__":
    main()
