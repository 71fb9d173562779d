"""Experiment trackers, offline first: TensorBoard, MLflow and Weights & Biases.

Two ways in:

- ``hpcne train --track tensorboard,mlflow,wandb`` (config key ``track``): `RunTrackers` writes, into the
  run directory and from the process that writes ``results.h5`` (rank 0), the same per-generation
  scalars as ``results.h5`` (step = generation), the configuration as hyper-parameters and, at the end,
  the best solution (``best.h5``) as an artifact where the tracker has artifacts (MLflow, W&B).
  TensorBoard event files go to ``RUN_DIR/tensorboard``, an MLflow file store to ``RUN_DIR/mlruns``, a
  W&B offline run to ``RUN_DIR/wandb`` (upload it later with the ``wandb sync`` command printed).
- EvoTorch's loggers, attached to a searcher's ``log_hook`` in a script: `TensorBoardLogger`,
  `MlflowLogger` and `WandbLogger`, with EvoTorch's arguments. They log the searcher's scalar status.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcne.hints import did_you_mean
from hpcne.logging import Logger, scalar_items

if TYPE_CHECKING:
    from hpcne.algorithms.base import SearchAlgorithm
    from hpcne.config import RunConfig

__all__ = [
    "TRACKERS",
    "MlflowLogger",
    "RunTrackers",
    "TensorBoardLogger",
    "WandbLogger",
    "check_trackers",
]

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""Tracker names of ``--track``, and the Python package each needs (all in ``pip install 'hpcne[track]'``)."""


def check_trackers(names: str | Iterable[str]) -> list[str]:
    """The tracker names of a ``track`` setting (a list, or one comma-separated string), checked.

    Raises:
        ValueError: An unknown name, or a tracker whose package is not installed.
    """
    if isinstance(names, str):
        names = names.split(",")
    if not isinstance(names, Iterable):
        raise ValueError(f"track must be a list of tracker names ({', '.join(TRACKERS)}); got {names!r}.")
    checked: list[str] = []
    for raw in names:
        name = str(raw).strip().lower()
        if not name or name in checked:
            continue
        if name not in TRACKERS:
            raise ValueError(f"Unknown tracker {name!r} in track.{did_you_mean(name, TRACKERS, what='trackers')}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(
                f"The {name} tracker needs the {TRACKERS[name]} package, which is not installed: "
                "`pip install 'hpcne[track]'` (or leave it out of track)."
            )
        checked.append(name)
    return checked


# ---------------------------------------------------------------------------- hpcne train --track


class RunTrackers:
    """The trackers of one training run (only the process that writes the results file opens them)."""

    def __init__(self, config: RunConfig, run_dir: Path, *, generation: int) -> None:
        """Open (or, for a resumed run, reopen) each tracker of ``config.track``.

        Args:
            config: The run's configuration (logged as hyper-parameters).
            run_dir: The run directory the trackers write into.
            generation: The generation the run starts after (0, or the checkpoint's on a resume): logs of
                later generations, left by a run that was stopped before its next checkpoint, are replaced
                where the tracker can replace them (TensorBoard), otherwise logged again (MLflow, W&B).
        """
        params = _flat_params(dataclasses.asdict(config))
        opened = {"tensorboard": _TensorBoard, "mlflow": _Mlflow, "wandb": _Wandb}
        self._trackers: list[_Tracker] = []
        try:
            for name in check_trackers(config.track):
                self._trackers.append(opened[name](run_dir, params, generation))
        except BaseException:
            self.close()
            raise

    def log(self, row: Mapping[str, Any]) -> None:
        """Log one row of the results file (its ``generation`` is the step)."""
        step = int(row["generation"])
        scalars = {key: float(value) for key, value in row.items() if key != "generation"}
        for tracker in self._trackers:
            tracker.log(step, scalars)

    def finish(self, best_file: Path | None) -> list[str]:
        """Add the best solution as an artifact, close, and say where each tracker wrote (one line each)."""
        lines = [tracker.finish(best_file) for tracker in self._trackers]
        self._trackers = []
        return lines

    def close(self) -> None:
        """Close without an artifact (a stopped or failed run)."""
        for tracker in self._trackers:
            tracker.close()
        self._trackers = []


class _Tracker:
    def log(self, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, best_file: Path | None) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _TensorBoard(_Tracker):
    def __init__(self, run_dir: Path, params: dict[str, Any], generation: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.directory = run_dir / "tensorboard"
        # purge_step: TensorBoard hides the steps after the checkpoint that an interrupted run logged.
        self._writer = SummaryWriter(str(self.directory), purge_step=generation + 1 if generation else None)
        if not generation:
            self._writer.add_text("config", f"```\n{json.dumps(params, indent=1, sort_keys=True)}\n```", 0)
            for summary in hparams({k: v for k, v in params.items() if v is not None}, {}):
                self._writer.file_writer.add_summary(summary)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, step)

    def finish(self, best_file: Path | None) -> str:
        self.close()
        return f"hpcne: TensorBoard: `tensorboard --logdir {self.directory}`"

    def close(self) -> None:
        self._writer.close()


class _Mlflow(_Tracker):
    def __init__(self, run_dir: Path, params: dict[str, Any], generation: int) -> None:
        # A plain file tree suits cluster file systems (no database locks); MLflow 3 asks to opt in to it.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.directory = run_dir.resolve() / "mlruns"
        self._client = MlflowClient(tracking_uri=self.directory.as_uri())
        experiment = self._client.get_experiment_by_name("hpcne")
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment("hpcne")
        found = self._client.search_runs([experiment_id], max_results=1) if generation else []
        if found:  # a resume continues the run
            self._run_id = found[0].info.run_id
            self._client.update_run(self._run_id, status="RUNNING")
        else:
            run = self._client.create_run(experiment_id, run_name=run_dir.resolve().name)
            self._run_id = run.info.run_id
            # MLflow keeps parameter values up to 6000 characters (a network string may be long).
            items = [Param(key, str(value)[:6000]) for key, value in params.items()]
            for start in range(0, len(items), 100):  # log_batch takes at most 100 parameters
                self._client.log_batch(self._run_id, params=items[start : start + 100])

    def log(self, step: int, scalars: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in scalars.items() if math.isfinite(value)]
        self._client.log_batch(self._run_id, metrics=metrics)

    def finish(self, best_file: Path | None) -> str:
        if best_file is not None:
            self._client.log_artifact(self._run_id, str(best_file))
        self._client.set_terminated(self._run_id)
        return f"hpcne: MLflow: `mlflow ui --backend-store-uri {self.directory.as_uri()}` (run {self._run_id})"

    def close(self) -> None:
        self._client.set_terminated(self._run_id, status="KILLED")


class _Wandb(_Tracker):
    def __init__(self, run_dir: Path, params: dict[str, Any], generation: int) -> None:
        import wandb

        id_file = run_dir / "wandb" / "hpcne-run-id"  # a resume continues the same W&B run
        id_file.parent.mkdir(parents=True, exist_ok=True)
        run_id = id_file.read_text().strip() if generation and id_file.exists() else secrets.token_hex(4)
        id_file.write_text(run_id)
        self._run = wandb.init(
            mode="offline",
            dir=str(run_dir),
            project=os.environ.get("WANDB_PROJECT", "hpcne"),
            name=run_dir.resolve().name,
            id=run_id,
            resume="allow",
            config=params,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log(scalars, step=step)

    def finish(self, best_file: Path | None) -> str:
        import wandb

        if best_file is not None:
            artifact = wandb.Artifact("best-solution", type="model")
            artifact.add_file(str(best_file))
            self._run.log_artifact(artifact)
        folder = self._run.settings.sync_dir
        self.close(exit_code=0)
        return f"hpcne: W&B (offline): `wandb sync {folder}` uploads it"

    def close(self, exit_code: int = 1) -> None:
        import wandb

        self._run.finish(exit_code=exit_code)
        wandb.teardown()  # W&B's service writes the run file after finish(); this waits until it is complete


def _flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"algo_options": {"popsize": 8}}`` -> ``{"algo_options.popsize": 8}``; lists as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat |= _flat_params(value, f"{prefix}{key}.")
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = json.dumps(value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# ---------------------------------------------------------------------------- EvoTorch's loggers


class TensorBoardLogger(Logger):
    """Writes the searcher's scalar status to TensorBoard event files (step: the status's ``iter``)."""

    def __init__(
        self,
        searcher: SearchAlgorithm,
        log_dir: str | os.PathLike | None = None,
        *,
        interval: int = 1,
        after_first_step: bool = False,
        group: str | None = None,
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is logged.
            log_dir: The folder of the event files (default: TensorBoard's ``runs/<date>_<host>``).
            interval: Log every this many steps.
            after_first_step: Log at step 1 and every ``interval`` steps after it.
            group: A prefix for the keys (``group/key``).
        """
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self.writer = SummaryWriter(None if log_dir is None else str(log_dir))
        self._group = group

    def _log(self, status: Mapping[str, Any]) -> None:
        step = int(status["iter"])
        for key, value in _numbers(status, self._group).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()


class MlflowLogger(Logger):
    """Logs the searcher's scalar status to MLflow, with EvoTorch's arguments."""

    def __init__(
        self,
        searcher: SearchAlgorithm,
        client: Any = None,
        run: Any = None,
        *,
        interval: int = 1,
        after_first_step: bool = False,
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is logged.
            client: An ``mlflow.tracking.MlflowClient``; None logs to the active run (``mlflow.log_metrics``).
            run: With a client: the ``mlflow.entities.Run`` or its id.
            interval: Log every this many steps.
            after_first_step: Log at step 1 and every ``interval`` steps after it.

        Raises:
            ValueError: Only one of ``client`` and ``run`` was given.
        """
        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        if (client is None) != (run is None):
            raise ValueError("MlflowLogger takes both a client and a run, or neither (to log to the active run).")
        self._client = client
        self._run_id = getattr(getattr(run, "info", None), "run_id", run)

    def _log(self, status: Mapping[str, Any]) -> None:
        import mlflow

        step = int(status["iter"])
        values = _numbers(status, None)
        if self._client is None:
            mlflow.log_metrics(values, step=step)
        else:
            for key, value in values.items():
                self._client.log_metric(self._run_id, key, value, step=step)


class WandbLogger(Logger):
    """Logs the searcher's scalar status to Weights & Biases, with EvoTorch's arguments."""

    def __init__(
        self,
        searcher: SearchAlgorithm,
        init: bool | None = True,
        *,
        interval: int = 1,
        after_first_step: bool = False,
        group: str | None = None,
        **wandb_kwargs: Any,
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is logged.
            init: Call ``wandb.init(**wandb_kwargs)`` here (e.g. ``mode="offline"``, ``project=...``).
            interval: Log every this many steps.
            after_first_step: Log at step 1 and every ``interval`` steps after it.
            group: A prefix for the keys (``group/key``).
            **wandb_kwargs: Passed to ``wandb.init``.
        """
        import wandb

        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self._group = group
        if init:
            wandb.init(**wandb_kwargs)

    def _log(self, status: Mapping[str, Any]) -> None:
        import wandb

        wandb.log(_numbers(status, self._group), step=int(status["iter"]))


def _numbers(status: Mapping[str, Any], group: str | None) -> dict[str, float]:
    """The numeric scalar entries of a status (finite or not), keys prefixed with ``group/``."""
    prefix = "" if group is None else f"{group}/"
    return {
        f"{prefix}{key}": float(value)
        for key, value in scalar_items(status).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
