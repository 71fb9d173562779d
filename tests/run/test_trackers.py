"""Experiment trackers: what `hpcne train --track` and EvoTorch's loggers wrote, read back with each library's
own reader (TensorBoard's EventAccumulator, MLflow's client on the file store, the W&B offline run file)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from run_helpers import TINY

from hpcne.io.analysis import read_results

pytest.importorskip("tensorboard", reason="pip install 'hpcne[track]'")
pytest.importorskip("mlflow", reason="pip install 'hpcne[track]'")
pytest.importorskip("wandb", reason="pip install 'hpcne[track]'")

TRACKED = ["--track", "tensorboard,mlflow,wandb", "--workers", "1"]


# ---------------------------------------------------------------------------- readers


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the event files in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def tensorboard_text(folder: Path, tag: str) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return events.Tensors(tag)[0].tensor_proto.string_val[0].decode()


def mlflow_client(run_dir: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(run_dir.resolve() / "mlruns").as_uri())


def wandb_records(run_dir: Path) -> Iterator[Any]:
    """The records of the W&B offline run files in ``run_dir/wandb``, oldest run first.

    A ``.wandb`` file is a LevelDB-style log (W&B's ``datastore``): a 7-byte header, then 32 KiB blocks
    of chunks, each with a 7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last), that
    hold serialized ``wandb_internal_pb2.Record`` messages.
    """
    from wandb.proto import wandb_internal_pb2

    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        assert data[:4] == b":W&B", f"{path} is not a W&B run file"
        position, record = 7, b""
        while position + 7 <= len(data):
            room = 32768 - position % 32768
            _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
            if room < 7 or (kind == 0 and length == 0):  # block padding
                position += room
                continue
            chunk = data[position + 7 : position + 7 + length]
            position += 7 + length
            record = chunk if kind in (1, 2) else record + chunk
            if kind in (1, 4):
                message = wandb_internal_pb2.Record()
                message.ParseFromString(record)
                yield message


def wandb_history(run_dir: Path) -> list[dict[str, Any]]:
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in wandb_records(run_dir)
        if record.WhichOneof("record_type") == "history"
    ]


# ---------------------------------------------------------------------------- hpcne train --track


def test_train_tracks_the_results_config_and_best_solution_in_every_tracker(in_process, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *TINY, "--generations", "3", *TRACKED, "--run-dir", run_dir])
    assert status == 0, out + err
    results = read_results(run_dir)
    columns = [c for c in results.columns if c != "generation"]

    scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert set(columns) <= set(scalars), sorted(scalars)
    for column in columns:
        steps, values = zip(*scalars[column])
        assert list(steps) == [1, 2, 3]
        assert np.allclose(values, results[column], equal_nan=True), column
    config = json.loads(tensorboard_text(run_dir / "tensorboard", "config/text_summary").strip("`\n"))
    assert config["seed"] == 7 and config["popsize"] == 8 and config["algo"] == "pgpe"

    client = mlflow_client(run_dir)
    (run,) = client.search_runs([client.get_experiment_by_name("hpcne").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["seed"] == "7" and run.data.params["episode_length"] == "50"
    for column in ("mean_eval", "best_eval", "interaction_count", "wall_time"):
        history = client.get_metric_history(run.info.run_id, column)
        assert [m.step for m in history] == [1, 2, 3]
        assert np.allclose([m.value for m in history], results[column]), column
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["best.h5"]

    history = wandb_history(run_dir)
    assert [row["_step"] for row in history] == [1, 2, 3]
    for column in ("mean_eval", "best_eval", "interaction_count"):
        assert np.allclose([row[column] for row in history], results[column]), column
    records = list(wandb_records(run_dir))
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    wandb_config = {
        item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in run_record.config.update
    }
    assert wandb_config["seed"] == 7 and wandb_config["env"] == "CartPole-v1"
    artifact = next(r.artifact for r in records if r.WhichOneof("record_type") == "artifact")
    assert artifact.name == "best-solution" and [m.path for m in artifact.manifest.contents] == ["best.h5"]

    import h5py

    with h5py.File(run_dir / "best.h5", "r") as best, h5py.File(run_dir / "results.h5", "r") as log:
        assert np.array_equal(best["values"][()], log["best/values"][()])
        assert best.attrs["env"] == "CartPole-v1"
    sync = next(line for line in out.splitlines() if line.startswith("hpcne: W&B (offline): `wandb sync "))
    assert Path(sync.split("`")[1].split()[-1]).is_dir(), out
    assert f"hpcne: TensorBoard: `tensorboard --logdir {run_dir / 'tensorboard'}`" in out
    assert f"hpcne: MLflow: `mlflow ui --backend-store-uri {(run_dir / 'mlruns').as_uri()}`" in out


def test_a_resumed_run_continues_the_same_tracked_runs(in_process, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    for generations in (2, 4):
        status, out, err = in_process(["train", *TINY, "--generations", generations, *TRACKED, "--run-dir", run_dir])
        assert status == 0, out + err
    results = read_results(run_dir)
    scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert [step for step, _ in scalars["best_eval"]] == [1, 2, 3, 4]
    assert np.allclose([value for _, value in scalars["best_eval"]], results["best_eval"])
    client = mlflow_client(run_dir)
    runs = client.search_runs([client.get_experiment_by_name("hpcne").experiment_id])
    assert len(runs) == 1
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "best_eval")] == [1, 2, 3, 4]
    ids = {record.run.run_id for record in wandb_records(run_dir) if record.WhichOneof("record_type") == "run"}
    assert len(ids) == 1, ids
    assert [row["_step"] for row in wandb_history(run_dir)] == [1, 2, 3, 4]


def test_trackers_are_checked_before_the_run_directory_exists(in_process, tmp_path: Path, monkeypatch) -> None:
    status, _out, err = in_process(["train", *TINY, "--track", "tensorbord", "--run-dir", tmp_path / "a"])
    assert status == 2
    assert err == "hpcne: error: Unknown tracker 'tensorbord' in track. Did you mean 'tensorboard'?\n"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    status, _out, err = in_process(["train", *TINY, "--track", "wandb", "--run-dir", tmp_path / "b"])
    assert status == 2
    assert "The wandb tracker needs the wandb package, which is not installed: `pip install 'hpcne[track]'`" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_config_key_track_takes_a_list(in_process, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('track = ["tensorboard"]\ngenerations = 2\n')
    flags = ["--popsize", "6", "--episode-length", "30", "--workers", "1"]
    status, out, err = in_process(["train", tmp_path / "c.toml", *flags, "--run-dir", tmp_path])
    assert status == 0, out + err
    assert [step for step, _ in tensorboard_scalars(tmp_path / "tensorboard")["mean_eval"]] == [1, 2]
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "wandb").exists()


# ---------------------------------------------------------------------------- EvoTorch's loggers


def _searcher() -> Any:
    from hpcne.algorithms import SNES
    from hpcne.core import Problem

    problem = Problem("min", lambda x: (x**2).sum(-1), solution_length=5, initial_bounds=(-1, 1), vectorized=True)
    return SNES(problem, stdev_init=1.0)


def test_evotorch_style_loggers_write_the_scalar_status(tmp_path: Path, monkeypatch) -> None:
    import mlflow
    import wandb

    from hpcne.trackers import MlflowLogger, TensorBoardLogger, WandbLogger

    searcher = _searcher()
    TensorBoardLogger(searcher, tmp_path / "tb", interval=2)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow_client(tmp_path)
    run = client.create_run(client.create_experiment("loggers"))
    MlflowLogger(searcher, client, run)
    quiet = wandb.Settings(silent=True, console="off", x_disable_stats=True)
    WandbLogger(searcher, mode="offline", dir=str(tmp_path), project="loggers", group="train", settings=quiet)
    best = []
    searcher.log_hook.append(lambda status: best.append(status["best_eval"]))
    searcher.run(4)
    wandb.finish()
    wandb.teardown()  # W&B's service writes the run file after finish(); teardown waits until it is complete
    assert [step for step, _ in tensorboard_scalars(tmp_path / "tb")["best_eval"]] == [2, 4]
    history = client.get_metric_history(run.info.run_id, "best_eval")
    assert [(m.step, m.value) for m in history] == [(i + 1, pytest.approx(v)) for i, v in enumerate(best)]
    assert [row["train/best_eval"] for row in wandb_history(tmp_path)] == pytest.approx(best)
    with pytest.raises(ValueError, match="both a client and a run, or neither"):
        MlflowLogger(searcher, client)
    assert all(math.isfinite(v) for v in best)
    assert mlflow.active_run() is None
