"""Loading, summarizing and plotting of results files with pandas and matplotlib."""

from __future__ import annotations

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

__all__ = ["load_runs", "plot_learning_curves", "read_results", "summarize"]

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


def plot_learning_curves(runs_df: pd.DataFrame, out_path: str | Path, *, group_by: str | None = None) -> Path:
    """Plots evaluations against generations, interactions and wall time into a PNG file.

    Each curve (population mean, best so far and, when logged, center) is drawn per group of runs: a single
    run as a plain line, several runs as their mean with a min-max band, after interpolating each run onto
    the x values that all runs of the group cover.

    Args:
        runs_df: Output of `load_runs`, or of `read_results` for a single run.
        out_path: The PNG file to write.
        group_by: Column or results attribute whose value groups the runs (e.g. an attribute naming the
            configuration without its seed); by default all runs form one group.

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
                _plot_group(axes, xy, label, color=color, linestyle=linestyle)
        axes.set(xlabel=x_label, ylabel="evaluation", title=f"Evaluation vs {x_label}")
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize="small")
    run_count = sum(len(runs) for runs in groups.values())
    figure.suptitle(f"Learning curves ({run_count} run{'s' if run_count > 1 else ''})")
    out_path = Path(out_path)
    figure.savefig(out_path, format="png", dpi=100)
    return out_path


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
    if group_by in run:
        return f"{group_by}={run[group_by].iloc[0]}"
    if group_by in attrs:
        return f"{group_by}={attrs[group_by]}"
    raise ValueError(
        f"Cannot group run {name!r} by {group_by!r}: expected a log column or results attribute of that "
        f"name, found columns {list(run.columns)} and attributes {list(attrs)}."
    )


def _plot_group(axes: Axes, curves: list[np.ndarray], label: str, *, color: str, linestyle: str) -> None:
    """Draws one curve of a group of runs: the run itself, or the mean and min-max band of several runs.

    Args:
        axes: The panel to draw in.
        curves: One (2, n) array of x and y values per run.
        label: The legend label.
        color: The line and band color.
        linestyle: The line style.
    """
    curves = [curve for curve in curves if curve.shape[1]]
    if len(curves) == 1:
        axes.plot(*curves[0], color=color, linestyle=linestyle, label=label)
    elif curves:
        low, high = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
        grid = np.unique(np.concatenate([x for x, _ in curves]))
        grid = grid[(grid >= low) & (grid <= high)]
        values = np.stack([np.interp(grid, x, y) for x, y in curves])
        axes.plot(
            grid,
            values.mean(axis=0),
            color=color,
            linestyle=linestyle,
            label=f"{label} (mean of {len(curves)} runs, band: min-max)",
        )
        axes.fill_between(grid, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)
