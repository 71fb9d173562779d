"""Loading, summarizing and plotting of results files with pandas and matplotlib."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hpcne.io.results import RESULTS_FILENAME
from hpcne.io.tree import read_attrs
from hpcne.io.validate import DamagedFileError, check_dataset, open_for_reading

__all__ = ["align_runs", "load_runs", "mean_interval", "plot_learning_curves", "read_results", "summarize"]

_SUMMARY_COLUMNS = {  # log column -> summary column; each summary value is the run's last non-NaN value
    "mean_eval": "final_mean_eval",
    "best_eval": "best_eval",
    "center_eval": "final_center_eval",
    "interaction_count": "total_interactions",
    "episode_count": "total_episodes",
    "wall_time": "wall_time",
}
_X_AXES = {"generation": "generation", "interaction_count": "interactions", "wall_time": "wall time [s]"}
_CURVES = {"mean_eval": ("population mean", "-"), "best_eval": ("best so far", "--"), "center_eval": ("center", ":")}
_SINGLE_RUN = "run"
# Two-sided 95% quantiles of Student's t for 1-30 degrees of freedom; beyond, the normal 1.96 is within 1%.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
_T95 += (2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def read_results(path_or_run_dir: str | Path) -> pd.DataFrame:
    """Reads the log of a results file, also while its writer is still appending.

    Args:
        path_or_run_dir: A results file, or a run directory containing ``results.h5``.

    Returns:
        One row per generation and one column per log column; ``attrs`` holds the file's root attributes.

    Raises:
        FileNotFoundError: There is no such results file.
        DamagedFileError: It is truncated, damaged, or holds data outside the file (never a hang).
    """
    path = Path(path_or_run_dir)
    if path.is_dir():
        path = path / RESULTS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"Expected a results file or a run directory containing {RESULTS_FILENAME}, found no file at "
            f"{path}; check the path."
        )
    with open_for_reading(path) as file:
        try:
            log = file["log"]
            for column in log.values():
                check_dataset(column)
            rows = min((len(column) for column in log.values()), default=0)  # a row may be half appended
            frame = pd.DataFrame({name: column[:rows] for name, column in log.items()})
            frame.attrs = read_attrs(file)
        except Exception as err:  # what h5py raises for damaged metadata or data: RuntimeError, OSError, ...
            raise DamagedFileError(f"{path} is not a readable results file ({err}).") from err
    return frame


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Reads several results files into one frame with a ``run`` column.

    Runs are named after their run directory (or the file stem for files not named ``results.h5``), with
    ``-2``, ``-3``... appended to repeated names. ``attrs["runs"]`` maps each run name to its attributes.

    Args:
        paths: Results files or run directories.

    Returns:
        The concatenated logs, ``run`` first.
    """
    frames: dict[str, pd.DataFrame] = {}
    for path in paths:
        frame = read_results(path)
        name = _unique(_run_name(Path(path)), frames)
        frames[name] = frame.assign(run=name)[["run", *frame.columns]]
    if not frames:
        raise ValueError("Expected at least one results path, found none; pass run directories or files.")
    runs = pd.concat(frames.values(), ignore_index=True)
    runs.attrs = {"runs": {name: frame.attrs for name, frame in frames.items()}}
    return runs


def summarize(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Summarizes each run in one row.

    Args:
        runs_df: Output of `load_runs`, or of `read_results` for a single run.

    Returns:
        A frame indexed by run with ``generations`` (rows logged) and the last values of ``mean_eval``,
        ``best_eval``, ``center_eval``, ``interaction_count``, ``episode_count`` and ``wall_time`` (as
        ``final_mean_eval``, ``best_eval``, ``final_center_eval``, ``total_interactions``,
        ``total_episodes``, ``wall_time``); columns absent from the log, or all NaN, are left out.
    """
    runs = _with_run_column(runs_df).groupby("run", sort=False)
    present = [column for column in _SUMMARY_COLUMNS if column in runs_df]
    summary = runs[present].last().rename(columns=_SUMMARY_COLUMNS)
    summary.insert(0, "generations", runs.size())
    return summary.dropna(axis=1, how="all")


def plot_learning_curves(
    runs_df: pd.DataFrame, out_path: str | Path, *, group_by: str | None = None, min_runs: int | None = None
) -> Path:
    """Plots evaluations against generations, interactions and wall time into a PNG file.

    Each curve (population mean, best so far and, when logged, center) is drawn per group of runs: a single
    run as a plain line, several runs as their mean with a band of the 95% interval of that mean. Runs of
    different lengths are aligned, not cut to the shortest: each run is interpolated onto the x values of
    all runs within its own range, and the mean is drawn wherever at least ``min_runs`` runs have data;
    where that count changes, it is written on the curve (``n=2``). So a curve that goes on after some runs
    ended (a run that reached its target stops early) is the mean of the runs still going.

    Args:
        runs_df: Output of `load_runs`, or of `read_results` for a single run.
        out_path: The PNG file to write.
        group_by: Column or results attribute whose value groups the runs (e.g. an attribute naming the
            configuration without its seed, or the ``group`` column of `hpcne.io.report.load_groups`); by
            default all runs form one group.
        min_runs: Draw a group's mean where at least this many of its runs have data (default: half of
            the group's runs, rounded up, at least 2 for a group of several runs).

    Returns:
        The PNG file.

    Raises:
        ValueError: A needed column is missing, or ``group_by`` names neither a column nor an attribute.
    """
    missing = sorted({*_X_AXES, "mean_eval", "best_eval"} - set(runs_df.columns))
    if missing:
        raise ValueError(
            f"Expected the log columns written by the trainer, but {missing} are missing; "
            "plot frames from read_results or load_runs."
        )
    groups = _group_runs(_with_run_column(runs_df), group_by)
    curves = {y: style for y, style in _CURVES.items() if y in runs_df and runs_df[y].notna().any()}
    figure = Figure(figsize=(16, 4.8), layout="constrained")
    for axes, (x, x_label) in zip(figure.subplots(1, len(_X_AXES), sharey=True), _X_AXES.items()):
        for group_index, (group, runs) in enumerate(groups.items()):
            for curve_index, (y, (y_label, linestyle)) in enumerate(curves.items()):
                label = y_label if len(groups) == 1 else f"{group}: {y_label}"
                color = f"C{(curve_index if len(groups) == 1 else group_index) % 10}"
                xy = [run[[x, y]].dropna().to_numpy().T for run in runs]
                least = min_runs if min_runs is not None else max(2, math.ceil(len(runs) / 2))
                _plot_group(
                    axes,
                    xy,
                    label,
                    color=color,
                    linestyle=linestyle,
                    min_runs=min(least, len(runs)),
                    show_count=curve_index == 0,
                )
        axes.set(xlabel=x_label, ylabel="evaluation", title=f"Evaluation vs {x_label}")
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize="small")
    run_count = sum(len(runs) for runs in groups.values())
    figure.suptitle(f"Learning curves ({run_count} run{'s' if run_count > 1 else ''})")
    out_path = Path(out_path)
    figure.savefig(out_path, format="png", dpi=100)
    return out_path


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the 95% t-interval of the mean (NaN: 1 value)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), math.nan, math.nan
    std = float(values.std(ddof=1))
    t = _T95[len(values) - 2] if len(values) - 1 <= len(_T95) else 1.96
    return float(values.mean()), std, t * std / math.sqrt(len(values))


def _run_name(path: Path) -> str:
    path = path.resolve()
    if path.is_dir():
        return path.name
    return path.parent.name if path.name == RESULTS_FILENAME else path.stem


def _unique(name: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    candidates = (name if count == 1 else f"{name}-{count}" for count in range(1, len(taken) + 2))
    return next(candidate for candidate in candidates if candidate not in taken)


def _with_run_column(runs_df: pd.DataFrame) -> pd.DataFrame:
    return runs_df if "run" in runs_df else runs_df.assign(run=_SINGLE_RUN)


def _group_runs(runs_df: pd.DataFrame, group_by: str | None) -> dict[str, list[pd.DataFrame]]:
    """Splits a frame into runs, grouped by the value of a column or results attribute."""
    groups: dict[str, list[pd.DataFrame]] = {}
    run_attrs = runs_df.attrs.get("runs", {_SINGLE_RUN: runs_df.attrs})
    for name, run in runs_df.groupby("run", sort=False):
        groups.setdefault(_group_key(name, run, run_attrs.get(name, {}), group_by), []).append(run)
    return groups


def _group_key(name: str, run: pd.DataFrame, attrs: dict[str, Any], group_by: str | None) -> str:
    if group_by is None:
        return "all runs"
    if group_by == "group" and "group" in run:  # hpcne.io.report's groups carry their own names
        return str(run["group"].iloc[0])
    if group_by in run:
        return f"{group_by}={run[group_by].iloc[0]}"
    if group_by in attrs:
        return f"{group_by}={attrs[group_by]}"
    raise ValueError(
        f"Cannot group run {name!r} by {group_by!r}: expected a log column or results attribute of that "
        f"name, found columns {list(run.columns)} and attributes {list(attrs)}."
    )


def align_runs(curves: list[np.ndarray], min_runs: int = 1) -> pd.DataFrame:
    """Aligns runs of different lengths: their mean and 95% interval wherever at least ``min_runs`` have data.

    Args:
        curves: One (2, n) array of increasing x values and their y values per run.
        min_runs: The fewest runs a point is computed from.

    Returns:
        One row per x value of any run (``x``), with ``runs`` (how many runs cover it: each run covers its
        own first to last x and is interpolated linearly in between), ``mean`` and ``half_width`` (of the
        95% t-interval of the mean; NaN where one run covers it).
    """
    curves = [curve for curve in curves if curve.shape[1]]
    if not curves:
        return pd.DataFrame({"x": [], "runs": [], "mean": [], "half_width": []})
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    inside = np.stack([(grid >= x[0]) & (grid <= x[-1]) for x, _ in curves])
    values = np.where(inside, np.stack([np.interp(grid, x, y) for x, y in curves]), np.nan)
    stats = np.array([mean_interval(column) for column in values.T]).reshape(-1, 3)
    aligned = pd.DataFrame({"x": grid, "runs": inside.sum(axis=0), "mean": stats[:, 0], "half_width": stats[:, 2]})
    return aligned[aligned["runs"] >= min_runs].reset_index(drop=True)


def _plot_group(
    axes: Axes, curves: list[np.ndarray], label: str, *, color: str, linestyle: str, min_runs: int, show_count: bool
) -> None:
    """Draws one curve of a group of runs: the run itself, or the mean and 95% band of several (`align_runs`),
    with the number of runs written where it changes when ``show_count``."""
    curves = [curve for curve in curves if curve.shape[1]]
    if len(curves) == 1:
        axes.plot(*curves[0], color=color, linestyle=linestyle, label=label)
        return
    aligned = align_runs(curves, min_runs)
    if aligned.empty:
        return
    x, mean, half, count = (aligned[c].to_numpy() for c in ("x", "mean", "half_width", "runs"))
    axes.plot(x, mean, color=color, linestyle=linestyle, label=f"{label} (mean of {len(curves)} runs, band: 95%)")
    half = np.nan_to_num(half)
    axes.fill_between(x, mean - half, mean + half, color=color, alpha=0.2, linewidth=0)
    changes = [0, *np.flatnonzero(np.diff(count)) + 1]
    if show_count and (len(changes) > 1 or count[0] != len(curves)):
        for start in changes:
            axes.annotate(f"n={count[start]}", (x[start], mean[start]), color=color, fontsize="x-small")
