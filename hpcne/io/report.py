"""Comparing groups of runs (one group per configuration, one run per seed): groups, statistics, table."""

from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hpcne.io.analysis import load_runs, mean_interval

__all__ = ["compare_groups", "load_groups", "parse_groups"]

_COMPARED = {  # log column -> (table name, how a run's value is taken)
    "center_eval": ("final center", "last"),
    "mean_eval": ("final mean", "last"),
    "best_eval": ("best", "max"),
}


def parse_groups(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``NAME=GLOB[,GLOB...]`` strings to run directories per group, in the order given.

    Raises:
        ValueError: A spec without ``=``, a repeated name, or a pattern that matches no run directory.
    """
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, patterns = spec.partition("=")
        name = name.strip()
        if not sep or not name or not patterns.strip():
            raise ValueError(f"--group takes NAME=GLOB (e.g. --group pgpe='runs/pgpe/seed*'); got {spec!r}.")
        if name in groups:
            raise ValueError(f"--group {name} is given twice; give each group one name (patterns: NAME=A,B).")
        paths: list[Path] = []
        for pattern in patterns.split(","):
            matches = sorted(glob.glob(pattern.strip())) or ([pattern] if Path(pattern).exists() else [])
            if not matches:
                raise ValueError(f"--group {name}: {pattern!r} matches no run directory; check the path.")
            paths += [Path(match) for match in matches if Path(match) not in paths]
        groups[name] = paths
    return groups


def load_groups(groups: dict[str, list[Path]]) -> pd.DataFrame:
    """The logs of every run of every group (`load_runs`): runs named ``GROUP/RUN``, a ``group`` column."""
    frames, attrs = [], {}
    for group, paths in groups.items():
        runs = load_runs(paths)
        runs["run"] = group + "/" + runs["run"]
        runs.insert(1, "group", group)
        attrs |= {f"{group}/{name}": run_attrs for name, run_attrs in runs.attrs["runs"].items()}
        frames.append(runs)
    everything = pd.concat(frames, ignore_index=True)
    everything.attrs = {"runs": attrs}
    return everything


def _last(column: pd.Series) -> float:
    present = column.dropna()
    return float(present.iloc[-1]) if len(present) else math.nan


def compare_groups(runs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per group: its runs, and mean, std and 95% interval over them of each run's final center
    evaluation, final population mean and best evaluation, with the mean generations, interactions and wall
    time the runs took.

    Args:
        runs_df: Output of `load_groups`.

    Returns:
        A frame indexed by group; columns ``runs``, then ``<value> mean``, ``<value> std``, ``<value> ±95%``
        per compared value (left out where no run logged it), ``generations``, ``interactions``, ``wall time``.
    """
    rows = {}
    for group, frame in runs_df.groupby("group", sort=False):
        per_run = frame.groupby("run", sort=False)
        row: dict[str, float] = {"runs": per_run.ngroups}
        for column, (name, how) in _COMPARED.items():
            if column not in frame or frame[column].isna().all():
                continue
            values = per_run[column].agg(_last if how == "last" else "max")
            mean, std, half = mean_interval(values.to_numpy())
            row |= {f"{name} mean": mean, f"{name} std": std, f"{name} ±95%": half}
        row["generations"] = per_run["generation"].max().mean()
        row["interactions"] = per_run["interaction_count"].max().mean()
        row["wall time"] = per_run["wall_time"].max().mean()
        rows[group] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "group"
    return table
