"""Per-run HDF5 results file: one row per generation and the best solution, readable while written (SWMR)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from hpcne.io.tree import read_attrs, write_attrs
from hpcne.io.validate import DamagedFileError, check_dataset, open_for_reading, require_free_space

__all__ = ["RESULTS_FILENAME", "RESULT_COLUMNS", "ResultsWriter"]

RESULTS_FILENAME = "results.h5"
"""Name of the results file inside a run directory."""

RESULT_COLUMNS: dict[str, str] = {
    "generation": "int64",
    "mean_eval": "float64",
    "median_eval": "float64",
    "best_eval": "float64",
    "pop_best_eval": "float64",
    "worst_eval": "float64",
    "center_eval": "float64",
    "popsize": "int64",
    "interaction_count": "int64",
    "episode_count": "int64",
    "wall_time": "float64",
    "eval_time": "float64",
    "comm_time": "float64",
    "update_time": "float64",
    "stdev_norm": "float64",
}
"""The log columns written by the trainer (name -> numpy dtype); ``best_eval`` is the best so far."""

_LOG, _BEST = "log", "best"
_LIBVER = "v110"  # the oldest HDF5 file format that supports SWMR
_CHUNK_ROWS = 256
_ROOM = 2**20  # free bytes required before a write: HDF5 may crash rather than fail on a full disk
_COLUMN_DTYPE_KINDS = "biuf"


class _Spec(NamedTuple):
    """Layout of one dataset."""

    shape: tuple[int, ...]
    maxshape: tuple[int | None, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None
    fillvalue: float | int | None = None


class ResultsWriter:
    """Writes a run's results file, which readers can open at any time with ``swmr=True``.

    Layout: ``/log/<column>`` holds one resizable 1-D dataset per column with one row per generation;
    ``/best`` holds the best solution so far (``values``, ``eval``, ``generation`` and, with
    ``obs_length``, the observation normalization ``obs_mean``, ``obs_stdev``, ``obs_count``); root
    attributes hold ``attrs``. Every change is flushed at once, except that with ``flush_seconds`` log
    rows and the best solution are written in batches: an append or a best update writes what is
    pending once that long has passed since the last write, and `flush`, `truncate` and `close`
    write it at once.

    Args:
        path: The results file.
        columns: Log columns (name -> numeric numpy dtype), e.g. `RESULT_COLUMNS`; must include an integer
            ``generation`` column.
        attrs: Root attributes (config as JSON, versions, environment id...), stored when the file is created.
        best_length: Length of the solution vector; enables `update_best`.
        obs_length: Length of the observation vector; also stores its normalization statistics in ``/best``.
        resume: Continue an existing file (one that is missing is created). The columns must match; call
            `truncate` to drop the generations after the checkpoint that the run resumes from.
        flush_seconds: Keep appended rows and best updates in memory until this long has passed since
            the last write, then write them in one go (a write costs a few ms, which counts for
            generations of a few tens of ms); 0 writes each at once.

    Raises:
        FileExistsError: The file exists and ``resume`` is False.
        ValueError: The columns are invalid or, when resuming, differ from the file's.
        DamagedFileError: When resuming, the file cannot be read (truncated, damaged, or holding data that
            a results file never holds); nothing was changed.
    """

    def __init__(
        self,
        path: str | Path,
        columns: Mapping[str, DTypeLike],
        *,
        attrs: Mapping[str, str | int | float] | None = None,
        best_length: int | None = None,
        obs_length: int | None = None,
        resume: bool = False,
        flush_seconds: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.flush_seconds = float(flush_seconds)
        self._pending: list[Mapping[str, float | int]] = []  # appended rows not written yet
        self._pending_best: dict[str, np.ndarray] = {}  # best-solution datasets not written yet
        self._written = time.monotonic()
        self.columns = _column_dtypes(columns)
        if best_length is None and obs_length is not None:
            raise ValueError("Got obs_length without best_length; pass best_length to store the best solution.")
        exists = self.path.exists()
        if exists and not resume:
            raise FileExistsError(
                f"Results file {self.path} already exists; pass resume=True to continue it, "
                "or write the run to a new directory."
            )
        require_free_space(self.path, 2 * (self.path.stat().st_size if exists else 0) + _ROOM)  # the rewrite copies
        if exists:
            _rewrite(self.path)
        self._file = h5py.File(self.path, "a", libver=_LIBVER)
        try:
            if not exists:
                write_attrs(self._file, attrs or {})
            log_specs = {name: _column_spec(dtype) for name, dtype in self.columns.items()}
            # the datasets, looked up once: a lookup by name costs as much as a small write
            self._log = dict(_require_group(self._file, _LOG, log_specs).items())
            self._best: dict[str, h5py.Dataset] | None = None
            if best_length is not None:
                self._best = dict(_require_group(self._file, _BEST, _best_specs(best_length, obs_length)).items())
            self._resize(min(len(dataset) for dataset in self._log.values()))  # drops a row cut by a crash
            self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise

    def append(self, row: Mapping[str, float | int]) -> None:
        """Appends one generation's row; omitted float columns are stored as NaN.

        Raises:
            ValueError: The row has unknown columns, lacks a non-float column, or its generation is not
                greater than the last logged one.
        """
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise ValueError(
                f"Row has unknown columns {unknown}; expected a subset of {list(self.columns)}. "
                "Declare every column when creating the results file."
            )
        missing = [name for name, dtype in self.columns.items() if name not in row and dtype.kind != "f"]
        if missing:
            raise ValueError(
                f"Row lacks the non-float columns {missing}; "
                "only float columns may be left out (they are stored as NaN)."
            )
        last = self.last_generation if self._rows or self._pending else None
        if last is not None and row["generation"] <= last:
            raise ValueError(
                f"Expected a generation greater than the last logged one ({last}), "
                f"found {row['generation']}; "
                "call truncate() first when resuming from an older checkpoint."
            )
        self._pending.append(dict(row))
        self._write_if_due()

    def flush(self) -> None:
        """Write the rows appended and the best solution updated since the last write, and flush the file."""
        self._written = time.monotonic()
        if not self._pending and not self._pending_best:
            return
        require_free_space(self.path, _ROOM)
        if self._pending:
            rows, count = self._rows, len(self._pending)
            for name, dataset in self._log.items():
                dataset.resize((rows + count,))
                dataset[rows:] = [row.get(name, np.nan) for row in self._pending]
            self._rows += count
            self._pending.clear()
        for name, array in self._pending_best.items():
            self._best[name][...] = array  # type: ignore[index]  # pending only with a best group
        self._pending_best.clear()
        self._file.flush()

    def _write_if_due(self) -> None:
        if time.monotonic() - self._written >= self.flush_seconds:
            self.flush()

    @property
    def last_generation(self) -> int:
        """The generation of the last logged row (0 when there is none)."""
        if self._pending:
            return int(self._pending[-1]["generation"])
        return int(self._log["generation"][self._rows - 1]) if self._rows else 0

    def truncate(self, after_generation: int) -> None:
        """Removes the rows of the generations after ``after_generation``.

        A run restarted from the checkpoint of ``after_generation`` calls this so that each generation is
        logged once.
        """
        self.flush()
        generations = self._log["generation"][: self._rows]
        self._resize(int(np.searchsorted(generations, after_generation, side="right")))
        self._file.flush()

    def update_best(
        self,
        values: ArrayLike,
        eval: float,
        generation: int,
        obs_mean: ArrayLike | None = None,
        obs_stdev: ArrayLike | None = None,
        obs_count: int | None = None,
    ) -> None:
        """Overwrites the stored best solution; observation statistics left as None keep their values.

        Args:
            values: The solution vector (``best_length`` values).
            eval: Its evaluation.
            generation: The generation it was found in.
            obs_mean: Mean of the observation normalization (``obs_length`` values).
            obs_stdev: Standard deviation of the observation normalization.
            obs_count: Number of observations behind the statistics.

        Raises:
            RuntimeError: The file was created without ``best_length``.
            ValueError: A value has the wrong length, or observation statistics are given without
                ``obs_length``.
        """
        if self._best is None:
            raise RuntimeError(f"Results file {self.path} stores no best solution; pass best_length to ResultsWriter.")
        updates = {"values": values, "eval": eval, "generation": generation}
        updates |= {"obs_mean": obs_mean, "obs_stdev": obs_stdev, "obs_count": obs_count}
        arrays = {}
        for name, value in updates.items():
            if value is None:
                continue
            if name not in self._best:
                raise ValueError(
                    f"Results file {self.path} stores no observation statistics; pass obs_length to "
                    "ResultsWriter to store them."
                )
            arrays[name] = _checked_copy(self._best[name], value)
        self._pending_best |= arrays  # a copy: the caller may change its arrays before they are written
        self._write_if_due()

    def close(self) -> None:
        """Writes the pending rows and closes the file; further calls do nothing."""
        if self._file:
            try:
                self.flush()
            finally:
                self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _resize(self, rows: int) -> None:
        for dataset in self._log.values():
            dataset.resize((rows,))
        self._rows = rows


def _column_dtypes(columns: Mapping[str, DTypeLike]) -> dict[str, np.dtype]:
    dtypes = {name: np.dtype(dtype) for name, dtype in columns.items()}
    invalid = {name: str(dtype) for name, dtype in dtypes.items() if dtype.kind not in _COLUMN_DTYPE_KINDS}
    if invalid:
        raise ValueError(f"Expected numeric or bool column dtypes, found {invalid}; store other data as attributes.")
    if "generation" not in dtypes or dtypes["generation"].kind not in "iu":
        raise ValueError(
            f"Expected an integer 'generation' column, found {dtypes.get('generation', 'none')}; "
            "add 'generation': 'int64' to the columns."
        )
    return dtypes


def _column_spec(dtype: np.dtype) -> _Spec:
    return _Spec((0,), (None,), dtype, chunks=(_CHUNK_ROWS,))


def _fixed_spec(length: int, dtype: DTypeLike, fillvalue: float | int) -> _Spec:
    return _Spec((length,), (length,), np.dtype(dtype), fillvalue=fillvalue)


def _best_specs(best_length: int, obs_length: int | None) -> dict[str, _Spec]:
    specs = {
        "values": _fixed_spec(best_length, np.float32, np.nan),
        "eval": _fixed_spec(1, np.float64, np.nan),
        "generation": _fixed_spec(1, np.int64, -1),
    }
    if obs_length is not None:
        specs["obs_mean"] = _fixed_spec(obs_length, np.float64, np.nan)
        specs["obs_stdev"] = _fixed_spec(obs_length, np.float64, np.nan)
        specs["obs_count"] = _fixed_spec(1, np.int64, 0)
    return specs


def _require_group(file: h5py.File, name: str, specs: Mapping[str, _Spec]) -> h5py.Group:
    """Creates a group of datasets, or checks that the existing one has the same layout."""
    if name not in file:
        group = file.create_group(name, track_order=True)
        for key, spec in specs.items():
            group.create_dataset(key, **spec._asdict())
        return group
    group = file[name]
    found = {key: f"{dataset.dtype} {dataset.maxshape}" for key, dataset in group.items()}
    expected = {key: f"{spec.dtype} {spec.maxshape}" for key, spec in specs.items()}
    differences = [
        f"{key}: expected {expected.get(key, 'none')}, found {found.get(key, 'none')}"
        for key in sorted(expected.keys() | found.keys())
        if expected.get(key) != found.get(key)
    ]
    if differences:
        raise ValueError(
            f"Results file {file.filename} has a different /{name} layout (dtype, max shape): "
            f"{'; '.join(differences)}. Resume with the same columns and lengths, or write to a new file."
        )
    return group


def _checked_copy(dataset: h5py.Dataset, value: ArrayLike) -> np.ndarray:
    """``value`` as a new array of the dataset's type and shape, or a ValueError naming the dataset."""
    array = np.array(value, dtype=dataset.dtype)
    if array.size != dataset.size:
        raise ValueError(
            f"Expected {dataset.size} values for {dataset.name}, found {array.size}; pass values of the "
            "length the results file was created with."
        )
    return array.reshape(dataset.shape)


def _rewrite(path: Path) -> None:
    """Replaces a results file by a fresh copy of itself.

    A writer that crashed leaves its file marked as open for writing, and HDF5 then refuses to open it for
    writing again (``h5clear`` resets the mark); SWMR readers still can, so the copy recovers everything
    flushed before the crash.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open_for_reading(path) as source, h5py.File(tmp, "w", libver=_LIBVER) as target:
            source.visititems(_check_item)
            write_attrs(target, read_attrs(source))
            for name in source:
                source.copy(source[name], target, name=name)
    except (DamagedFileError, FileNotFoundError):
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # what h5py raises for damaged metadata or data: RuntimeError, OSError, ...
        tmp.unlink(missing_ok=True)
        raise DamagedFileError(f"{path} is damaged ({err}).") from err
    os.replace(tmp, path)


def _check_item(name: str, item: h5py.HLObject) -> None:
    """Refuse what a results file never holds: data outside the file, or more declared than stored."""
    if isinstance(item, h5py.Dataset):
        check_dataset(item)
