"""Loggers attached to a searcher's ``log_hook`` (EvoTorch's ``evotorch.logging``): stdout, pandas, HDF5."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import torch

from hpcne.algorithms.base import check_int
from hpcne.core import Solution
from hpcne.io.tree import read_tree, write_tree

if TYPE_CHECKING:
    import pandas as pd

    from hpcne.algorithms.base import SearchAlgorithm

__all__ = [  # noqa: F822 (the tracker loggers come from __getattr__)
    "HDF5Logger",
    "Logger",
    "MlflowLogger",
    "PandasLogger",
    "PicklingLogger",
    "ScalarLogger",
    "StdOutLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "scalar_items",
]

# Status entries hpcne adds to EvoTorch's; PandasLogger leaves them out unless asked (hpcne_columns=True).
HPCNE_STATUS_KEYS = ("popsize", "nan_count")


def scalar_items(status: Mapping[str, Any]) -> dict[str, Any]:
    """Return the scalar entries of ``status`` (numbers, strings, bools, 0-d tensors as Python numbers)."""
    scalars: dict[str, Any] = {}
    for key, value in status.items():
        if isinstance(value, torch.Tensor) and value.ndim == 0:
            scalars[key] = value.item()
        elif isinstance(value, (numbers.Number, str)):
            scalars[key] = value
    return scalars


class Logger:
    """Base class: attaches itself to ``searcher.log_hook`` and logs every ``interval`` steps.

    As in EvoTorch, steps ``interval, 2 interval, ...`` are logged, or with ``after_first_step``
    steps ``1, interval + 1, 2 interval + 1, ...``. The step number is the status's ``iter``, so a
    searcher restored from a state dict keeps the same schedule.
    """

    def __init__(self, searcher: SearchAlgorithm, *, interval: int = 1, after_first_step: bool = False) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is logged.
            interval: Log every this many steps (>= 1).
            after_first_step: Log at step 1 and every ``interval`` steps after it.
        """
        self.interval = check_int("interval", interval, minimum=1)
        self.after_first_step = bool(after_first_step)
        searcher.log_hook.append(self)

    def __call__(self, status: Mapping[str, Any]) -> None:
        """Log ``status`` if its step is on the schedule."""
        step = int(status["iter"]) - (1 if self.after_first_step else 0)
        if step % self.interval == 0:
            self._log(status)

    def _log(self, status: Mapping[str, Any]) -> None:
        """Record one status; subclasses implement it."""
        raise NotImplementedError


class ScalarLogger(Logger):
    """A logger that records only the scalar entries of the status (see :func:`scalar_items`)."""

    def __call__(self, status: Mapping[str, Any]) -> None:
        """Log the scalar entries of ``status`` if its step is on the schedule."""
        super().__call__(scalar_items(status))


def _describe(value: Any) -> str:
    """Render a status value in one short line, summarising tensors and solutions."""
    if isinstance(value, Solution):
        return f"<solution eval={value.evaluation:.6g} norm={float(torch.linalg.vector_norm(value.values)):.6g}>"
    if isinstance(value, torch.Tensor) and value.ndim > 0:
        norm = float(torch.linalg.vector_norm(value.double()))
        return f"<tensor shape={tuple(value.shape)} norm={norm:.6g}>"
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class StdOutLogger(Logger):
    """Prints each logged status as an aligned ``key : value`` block; tensors show shape and norm only."""

    def __init__(
        self,
        searcher: SearchAlgorithm,
        *,
        interval: int = 1,
        after_first_step: bool = False,
        leading_keys: Iterable[str] = ("iter",),
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is printed.
            interval: Print every this many steps.
            after_first_step: Print at step 1 and every ``interval`` steps after it.
            leading_keys: Keys printed first, in this order.
        """
        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self.leading_keys = tuple(leading_keys)

    def _log(self, status: Mapping[str, Any]) -> None:
        keys = [k for k in self.leading_keys if k in status]
        keys += [k for k in status if k not in self.leading_keys]
        width = max(len(str(k)) for k in keys)
        lines = [f"{str(k).rjust(width)} : {_describe(status[k])}" for k in keys]
        print("\n".join(lines), end="\n\n")


class PandasLogger(ScalarLogger):
    """Collects the scalar status entries of each logged step; :meth:`to_dataframe` returns them.

    The columns are EvoTorch's (e.g. ``mean_eval``, ``best_eval``, ``total_interaction_count``);
    hpcne's additional entries (:data:`HPCNE_STATUS_KEYS`) are kept with ``hpcne_columns=True``.
    """

    def __init__(
        self,
        searcher: SearchAlgorithm,
        *,
        interval: int = 1,
        after_first_step: bool = False,
        hpcne_columns: bool = False,
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is collected.
            interval: Collect every this many steps.
            after_first_step: Collect at step 1 and every ``interval`` steps after it.
            hpcne_columns: Also collect hpcne's own status entries (``popsize``, ``nan_count``).
        """
        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self.hpcne_columns = bool(hpcne_columns)
        self._rows: list[dict[str, Any]] = []

    def _log(self, status: Mapping[str, Any]) -> None:
        skipped = () if self.hpcne_columns else HPCNE_STATUS_KEYS
        self._rows.append({k: v for k, v in status.items() if k not in skipped})

    def to_dataframe(self, *, index: str | None = "iter") -> pd.DataFrame:
        """Return one row per logged step and one column per scalar status key.

        Args:
            index: The column to use as the index, or None for a plain range index.
        """
        import pandas as pd  # here: a training run that logs no DataFrame does not load pandas

        frame = pd.DataFrame(self._rows)
        return frame if index is None or frame.empty else frame.set_index(index)


def _storable(value: Any) -> Any:
    """A status value as plain data for an HDF5 tree: Solutions become their values and evals."""
    if isinstance(value, Solution):
        return {"values": value.values.detach().cpu().clone(), "evals": value.evals.detach().cpu().clone()}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    return value


_DEFAULT_ITEMS = ("center", "best", "pop_best", "median_eval", "mean_eval", "pop_best_eval")


class HDF5Logger(Logger):
    """Saves chosen status items to an HDF5 file at every logged step: EvoTorch's ``PicklingLogger`` without pickle.

    Files are named ``{prefix}_generation{step}.h5`` (the step zero-padded to ``zfill`` digits),
    written under a temporary name and renamed, so a file is never seen half-written. Solutions
    are stored as groups with ``values`` and ``evals``; :meth:`load_last_file` reads one back.
    The end of :meth:`~hpcne.algorithms.base.SearchAlgorithm.run` saves once more if the last
    step was not on the schedule. To save a whole policy, use ``GymNE.save_solution``.
    """

    def __init__(
        self,
        searcher: SearchAlgorithm,
        *,
        interval: int,
        after_first_step: bool = False,
        directory: str | os.PathLike | None = None,
        prefix: str | None = None,
        zfill: int = 6,
        items_to_save: str | Iterable[str] = (
            "center",
            "best",
            "pop_best",
            "median_eval",
            "mean_eval",
            "pop_best_eval",
        ),
        verbose: bool = True,
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is saved.
            interval: Save every this many steps.
            after_first_step: Save at step 1 and every ``interval`` steps after it.
            directory: Folder of the files (created if needed); the working directory by default.
            prefix: Start of the file names; by default the problem's class name, the time and the pid.
            zfill: Digits of the step number in file names.
            items_to_save: Status keys to save (those missing from a status are skipped).
            verbose: Print the name of each file written.
        """
        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self._searcher = searcher
        self.directory = Path.cwd() if directory is None else Path(directory)
        stamp = time.strftime("%Y-%m-%d-%H.%M.%S")
        self.prefix = f"{type(searcher.problem).__name__}_{stamp}_{os.getpid()}" if prefix is None else str(prefix)
        self.zfill = check_int("zfill", zfill, minimum=1)
        self.items_to_save = (items_to_save,) if isinstance(items_to_save, str) else tuple(items_to_save)
        self.verbose = bool(verbose)
        self.last_generation: int | None = None
        self.last_file_name: Path | None = None
        searcher.end_of_run_hook.append(self._final_save)

    def _log(self, status: Mapping[str, Any]) -> None:
        self.save(status=status)

    def _final_save(self, status: Mapping[str, Any]) -> None:
        if self.last_generation is None or self._searcher.step_count > self.last_generation:
            self.save(status=status)

    def save(self, fname: str | os.PathLike | None = None, *, status: Mapping[str, Any] | None = None) -> Path:
        """Write the chosen items of the status (the searcher's current one by default); return the file."""
        status = self._searcher.status if status is None else status
        step = self._searcher.step_count
        path = self.directory / (fname or f"{self.prefix}_generation{str(step).zfill(self.zfill)}.h5")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {key: _storable(status[key]) for key in self.items_to_save if key in status}
        partial = path.with_name(f".{path.name}.partial")
        with h5py.File(partial, "w", track_order=True) as file:
            write_tree(file, {"generation": step, **data})
        os.replace(partial, path)
        self.last_generation, self.last_file_name = step, path
        if self.verbose:
            print(f"hpcne: saved the status of step {step} to {path}")
        return path

    def load_last_file(self) -> dict[str, Any]:
        """The contents of the last file written (what :meth:`save` stored)."""
        if self.last_file_name is None:
            raise FileNotFoundError("HDF5Logger has written no file yet; run the searcher first.")
        with h5py.File(self.last_file_name, "r") as file:
            return read_tree(file)


class PicklingLogger:
    """Not available in hpcne, which never pickles (files must be safe to open); use :class:`HDF5Logger`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Refuse, naming the replacement."""
        raise TypeError(
            "hpcne has no PicklingLogger: it writes no pickle files (loading one can run arbitrary code). "
            "Use hpcne.logging.HDF5Logger with the same arguments: it saves the same status items to HDF5."
        )


# The experiment-tracker loggers live in hpcne.trackers (which builds on this module); EvoTorch users
# import them from here.
_TRACKER_LOGGERS = ("MlflowLogger", "TensorBoardLogger", "WandbLogger")


def __getattr__(name: str) -> Any:
    if name in _TRACKER_LOGGERS:
        from hpcne import trackers

        return getattr(trackers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
