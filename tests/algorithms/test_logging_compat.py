"""EvoTorch's logger classes: ScalarLogger, PandasLogger's columns, HDF5Logger (for PicklingLogger)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from hpcne.algorithms import SNES
from hpcne.core import Problem
from hpcne.logging import HDF5Logger, PandasLogger, PicklingLogger, ScalarLogger


def test_scalar_logger_sees_only_scalars(make_problem: Callable[..., Problem]) -> None:
    seen: list[Mapping[str, Any]] = []

    class Collect(ScalarLogger):
        def _log(self, status: Mapping[str, Any]) -> None:
            seen.append(status)

    snes = SNES(make_problem(), stdev_init=1.0)
    Collect(snes, interval=2)
    snes.run(4)
    assert [s["iter"] for s in seen] == [2, 4]
    assert "center" in snes.status and "best" in snes.status
    assert all(isinstance(v, (int, float)) for s in seen for v in s.values())


def test_pandas_logger_columns_are_evotorchs_unless_asked(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    plain, extended = PandasLogger(snes), PandasLogger(snes, hpcne_columns=True)
    snes.run(2)
    evotorch_columns = {"mean_eval", "median_eval", "pop_best_eval", "best_eval", "worst_eval"}
    assert set(plain.to_dataframe().columns) == evotorch_columns
    assert set(extended.to_dataframe().columns) == evotorch_columns | {"popsize", "nan_count"}
    assert plain.to_dataframe().index.tolist() == [1, 2]


def test_hdf5_logger_saves_the_status_items(make_problem: Callable[..., Problem], tmp_path: Path) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    logger = HDF5Logger(snes, interval=2, directory=tmp_path / "logs", prefix="run", verbose=False)
    snes.run(3)  # saved at step 2, and at the end (step 3 is off the schedule)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "run_generation000002.h5",
        "run_generation000003.h5",
    ]
    assert logger.last_generation == 3
    saved = logger.load_last_file()
    assert saved["generation"] == 3
    torch.testing.assert_close(saved["center"], snes.status["center"])
    torch.testing.assert_close(saved["best"]["values"], snes.status["best"].values)
    assert saved["best"]["evals"][0].item() == snes.status["best_eval"]
    assert saved["mean_eval"] == snes.status["mean_eval"]
    with pytest.raises(FileNotFoundError, match="no file yet"):
        HDF5Logger(snes, interval=1).load_last_file()


def test_pickling_logger_points_to_the_hdf5_logger(make_problem: Callable[..., Problem]) -> None:
    with pytest.raises(TypeError, match="HDF5Logger"):
        PicklingLogger(SNES(make_problem(), stdev_init=1.0), interval=1)


def test_tracker_loggers_are_at_evotorchs_module_path() -> None:
    from hpcne import logging, trackers

    assert logging.MlflowLogger is trackers.MlflowLogger and logging.WandbLogger is trackers.WandbLogger
    assert logging.TensorBoardLogger is trackers.TensorBoardLogger
    with pytest.raises(AttributeError, match="NeptuneLogger"):
        logging.NeptuneLogger  # noqa: B018
