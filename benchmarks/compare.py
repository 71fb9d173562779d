"""hpcne side by side with EvoTorch: speed (steps/s, seconds per generation) and time to solve.

Each side runs in a subprocess of its own (``benchmarks.side``), EvoTorch in its own virtual
environment (``benchmarks.evotorch_venv``), with the same task, network, PGPE settings, popsize
and number of workers. The two tools take turns within every repeat (and which goes first
alternates), so that a change of the machine's load hits both alike.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import LoadTracker, markdown_table, median, mpi_command, run_json, shown, write_csv
from benchmarks.evotorch_venv import ensure_evotorch_venv
from benchmarks.tasks import SOLVE_TASKS, SPEED_TASKS

__all__ = ["Layout", "evotorch_speed", "time_to_solve"]


@dataclass(frozen=True)
class Layout:
    """One way to run a side: tool, number of evaluating workers, and how."""

    tool: str  # "hpcne" or "evotorch"
    workers: int
    label: str
    worker_arg: int  # --workers of benchmarks.side
    ranks: int | None = None  # MPI ranks (hpcne only)

    def command(self, python: str, what: str, args: list[str]) -> list[str]:
        """The command line that runs this side."""
        side = ["--tool", self.tool, "--workers", str(self.worker_arg), *args]
        if self.ranks is not None:
            return mpi_command(self.ranks, "benchmarks.side", [what, *side])
        return [python, "-m", "benchmarks.side", what, *side]


def speed_layouts(workers: list[int], ray_single: bool) -> list[Layout]:
    """EvoTorch and hpcne layouts for each number of workers (EvoTorch first within a count)."""
    layouts = []
    for n in workers:
        if n == 1:
            layouts.append(Layout("evotorch", 1, "EvoTorch, in-process (num_actors=None)", 0))
            if ray_single:
                layouts.append(Layout("evotorch", 1, "EvoTorch, Ray, 1 actor", 1))
            layouts.append(Layout("hpcne", 1, "hpcne, in-process (num_actors=None)", 0))
        else:
            layouts.append(Layout("evotorch", n, f"EvoTorch, Ray, {n} actors", n))
            layouts.append(Layout("hpcne", n, f"hpcne, pool of {n} (num_actors={n})", n))
            layouts.append(Layout("hpcne", n, f"hpcne, MPI, {n} ranks (mpiexec -n {n})", 0, ranks=n))
    return layouts


def _take_turns(layouts: list[Layout], repeat: int) -> list[Layout]:
    """Within each worker count, EvoTorch first on even repeats and hpcne first on odd ones."""
    ordered: list[Layout] = []
    for n in dict.fromkeys(layout.workers for layout in layouts):
        group = [layout for layout in layouts if layout.workers == n]
        ordered += group if repeat % 2 == 0 else group[::-1]
    return ordered


def evotorch_speed(
    out: Path,
    *,
    tasks: list[str],
    workers: list[int],
    repeats: int,
    generations: dict[str, int],
    ray_single: bool = False,
) -> str:
    """Steps/s and seconds per generation of both tools; write the CSV and return the Markdown."""
    python = {"hpcne": sys.executable, "evotorch": str(ensure_evotorch_venv())}
    layouts = speed_layouts(workers, ray_single)
    load = LoadTracker()
    rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for task_name in tasks:
            args = ["--task", task_name, "--generations", str(generations[task_name])]
            for layout in _take_turns(layouts, repeat):
                run = run_json(layout.command(python[layout.tool], "speed", args))
                rows.append(
                    {"task": task_name, "repeat": repeat, "label": layout.label, "workers": layout.workers, **run}
                )
                rows[-1]["load"] = round(load.sample(), 2)
                print(f"  {task_name}, {layout.label}: {run['steps_per_s']:,.0f} steps/s", flush=True)
    write_csv(out, rows)
    return (
        speed_markdown(rows, layouts, generations) + f"\n({load.describe()} during the runs; all runs: {shown(out)})\n"
    )


def _paired_ratios(rows: list[dict[str, Any]], layout: Layout, evotorch: list[Layout], key: str) -> list[float]:
    """Per repeat: hpcne's ``key`` ÷ the best EvoTorch layout's (same workers, same repeat); inverted for times."""
    ratios = []
    for repeat in sorted({r["repeat"] for r in rows}):
        ours = [r[key] for r in rows if r["repeat"] == repeat and r["label"] == layout.label]
        theirs = [r for r in rows if r["repeat"] == repeat and r["label"] in {e.label for e in evotorch}]
        if ours and theirs:
            best = max(theirs, key=lambda r: r["steps_per_s"])[key]
            ratios.append(ours[0] / best if key == "steps_per_s" else best / ours[0])
    return ratios


def speed_markdown(rows: list[dict[str, Any]], layouts: list[Layout], generations: dict[str, int]) -> str:
    """The tables of :func:`evotorch_speed`, one per task, from its rows (also those of its CSV file)."""
    text = []
    for task_name in dict.fromkeys(r["task"] for r in rows):
        task = SPEED_TASKS[task_name]
        of_task = [r for r in rows if r["task"] == task_name]
        table = []
        for n in dict.fromkeys(layout.workers for layout in layouts):
            here = [layout for layout in layouts if layout.workers == n]
            evotorch = [layout for layout in here if layout.tool == "evotorch"]
            for layout in here:
                mine = [r for r in of_task if r["label"] == layout.label]
                if not mine:
                    continue
                cells = [
                    n,
                    layout.label,
                    f"{median(r['steps_per_s'] for r in mine):,.0f}",
                    f"{median(r['seconds_per_generation'] for r in mine):.2f}",
                    f"{median(r['steps'] / max(r['episodes'], 1) for r in mine):.0f}",
                ]
                for key in ("steps_per_s", "seconds_per_generation"):
                    ratios = _paired_ratios(of_task, layout, evotorch, key) if layout.tool == "hpcne" else []
                    spread = f" ({min(ratios):.1f}–{max(ratios):.1f})" if len(ratios) > 1 else ""
                    cells.append(f"**{median(ratios):.1f}×**{spread}" if ratios else "–")
                table.append(cells)
        headers = [
            "workers",
            "layout",
            "steps/s",
            "s/generation",
            "steps/episode",
            "hpcne ÷ EvoTorch, steps/s (range)",
            "EvoTorch ÷ hpcne, s/generation (range)",
        ]
        settings = task.searcher_kwargs()
        start = (
            "a balancing centre (`benchmarks.tasks.balancing_center`)" if task.center_init else "PGPE's initial centre"
        )
        runs = len({r["repeat"] for r in of_task})
        text.append(
            f"**{task.env}**, `{task.network}`, popsize {task.popsize}, PGPE with ClipUp (centre lr "
            f"{settings['center_learning_rate']}, max speed {settings['optimizer_config']['max_speed']}, stdev lr "
            f"{settings['stdev_learning_rate']}, stdev init {settings['stdev_init']}), from {start}, observation "
            f"normalization {'on' if task.observation_normalization else 'off'}; {generations[task_name]} "
            f"generation(s) timed after one warm-up, medians of {runs} runs\n\n" + markdown_table(headers, table)
        )
    return "\n".join(text)


def _solve_ratio(rows: list[dict[str, Any]], layouts: list[Layout]) -> str:
    """A line with the median ratio EvoTorch ÷ hpcne of the seconds to target, over the seeds both solved."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in rows:
        if r["solved"]:
            by_seed.setdefault(r["seed"], {})[r["tool"]] = r["reached_seconds"]
    ratios = [t["evotorch"] / t["hpcne"] for t in by_seed.values() if len(t) == 2]
    if not ratios:
        return "\nNo seed was solved by both tools within the budget.\n"
    return (
        f"\nEvoTorch ÷ hpcne, seconds to target: **{median(ratios):.1f}×** (median over {len(ratios)} seed(s) "
        f"that both solved; {layouts[0].label} vs {layouts[1].label}).\n"
    )


def time_to_solve(
    out: Path, *, tasks: list[str], seeds: list[int], workers: int, max_seconds: float, max_generations: int | None
) -> str:
    """Wall time and interactions to the task's target, both tools, same seeds; write the CSV, return Markdown."""
    python = {"hpcne": sys.executable, "evotorch": str(ensure_evotorch_venv())}
    if workers == 1:
        layouts = [
            Layout("evotorch", 1, "EvoTorch, in-process", 0),
            Layout("hpcne", 1, "hpcne, in-process", 0),
        ]
    else:
        layouts = [
            Layout("evotorch", workers, f"EvoTorch, Ray, {workers} actors", workers),
            Layout("hpcne", workers, f"hpcne, MPI, {workers} ranks", 0, ranks=workers),
        ]
    load = LoadTracker()
    rows: list[dict[str, Any]] = []
    for index, seed in enumerate(seeds):
        for task_name in tasks:
            args = ["--task", task_name, "--seed", str(seed), "--max-seconds", str(max_seconds)]
            if max_generations is not None:
                args += ["--max-generations", str(max_generations)]
            for layout in layouts if index % 2 == 0 else layouts[::-1]:
                run = run_json(layout.command(python[layout.tool], "solve", args), timeout=max_seconds + 600)
                rows.append({"task": task_name, "label": layout.label, **run, "load": round(load.sample(), 2)})
                print(
                    f"  {task_name}, seed {seed}, {layout.label}: solved={run['solved']} after "
                    f"{run['generations']} generations, {run['seconds']:.0f} s",
                    flush=True,
                )
    write_csv(out, rows)
    text = []
    for task_name in tasks:
        task = SOLVE_TASKS[task_name]
        budget = max_generations or task.max_generations
        mine = [r for r in rows if r["task"] == task_name]
        table = []
        for layout in layouts:
            for r in [r for r in mine if r["label"] == layout.label]:
                reached = (
                    (f"**{r['reached_seconds']:.1f}**", f"{r['reached_interactions']:,}", r["reached_generations"])
                    if r["solved"]
                    else (f"not within {r['seconds']:.0f} s", "–", "–")
                )
                table.append(
                    [
                        layout.label,
                        r["seed"],
                        *reached,
                        f"{r['interactions'] / r['seconds']:,.0f}",
                        f"{r['best_mean_eval']:.1f}",
                        f"{r['startup_seconds']:.1f}",
                    ]
                )
        headers = [
            "layout",
            "seed",
            "seconds to target",
            "interactions to target",
            "generations to target",
            "steps/s over the run",
            "best population mean",
            "start-up s (not counted)",
        ]
        settings = task.searcher_kwargs()
        text.append(
            f"**{task.env}**: target population mean return ≥ {task.target:g}, budget {budget} generations or "
            f"{max_seconds:.0f} s per run; `{task.network}`, popsize {task.popsize}, PGPE with ClipUp (centre lr "
            f"{settings['center_learning_rate']}, stdev lr {settings['stdev_learning_rate']}, stdev init "
            f"{settings['stdev_init']}), observation normalization "
            f"{'on' if task.observation_normalization else 'off'}\n\n"
            + markdown_table(headers, table, "l" + "r" * 7)
            + _solve_ratio(mine, layouts)
        )
    return "\n".join(text) + f"\n({load.describe()} during the runs; all runs: {shown(out)})\n"
