"""Tests of the results file written during a run and read while it grows."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcne.io import RESULT_COLUMNS, ResultsWriter, read_results

COLUMNS = {"generation": "int64", "mean_eval": "float64", "popsize": "int32"}


def _write_rows(path: Path, generations: range, **kwargs: object) -> None:
    with ResultsWriter(path, COLUMNS, **kwargs) as writer:
        for generation in generations:
            writer.append({"generation": generation, "mean_eval": generation / 2, "popsize": 8})


def test_rows_and_attributes_are_read_back(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    with ResultsWriter(path, COLUMNS, attrs={"config": '{"seed": 1}', "env_id": "CartPole-v1"}) as writer:
        writer.append({"generation": 1, "mean_eval": 0.5, "popsize": 8})
        writer.append({"generation": 2, "popsize": 8})
    frame = read_results(path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["generation"].tolist() == [1, 2]
    assert frame["mean_eval"].iloc[0] == 0.5 and np.isnan(frame["mean_eval"].iloc[1])
    assert frame.dtypes.astype(str).to_dict() == COLUMNS
    assert frame.attrs == {"config": '{"seed": 1}', "env_id": "CartPole-v1"}


def test_trainer_columns_are_accepted(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path / "results.h5", RESULT_COLUMNS) as writer:
        writer.append({name: 1 for name in RESULT_COLUMNS})
    assert list(read_results(tmp_path)) == list(RESULT_COLUMNS)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"generation": 1, "popsize": 8, "extra": 1.0}, "unknown columns"),
        ({"generation": 1, "mean_eval": 1.0}, "non-float columns"),
        ({"generation": 0, "popsize": 8}, "greater than the last logged one"),
    ],
)
def test_invalid_rows_are_rejected(tmp_path: Path, row: dict[str, float], match: str) -> None:
    with ResultsWriter(tmp_path / "results.h5", COLUMNS) as writer:
        writer.append({"generation": 0, "popsize": 8})
        with pytest.raises(ValueError, match=match):
            writer.append(row)
    assert len(read_results(tmp_path)) == 1


def test_invalid_columns_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="integer 'generation' column"):
        ResultsWriter(tmp_path / "a.h5", {"mean_eval": "float64"})
    with pytest.raises(ValueError, match="numeric or bool"):
        ResultsWriter(tmp_path / "b.h5", {"generation": "int64", "note": "U10"})


def test_existing_file_needs_resume(tmp_path: Path) -> None:
    _write_rows(tmp_path / "results.h5", range(2))
    with pytest.raises(FileExistsError, match="resume=True"):
        ResultsWriter(tmp_path / "results.h5", COLUMNS)


def test_resume_truncates_later_generations(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    _write_rows(path, range(1, 11), attrs={"config": "original"})
    with ResultsWriter(path, COLUMNS, attrs={"config": "ignored"}, resume=True) as writer:
        writer.truncate(6)
        writer.append({"generation": 7, "mean_eval": -1.0, "popsize": 8})
    frame = read_results(path)
    assert frame["generation"].tolist() == list(range(1, 8))
    assert frame["mean_eval"].iloc[-1] == -1.0
    assert frame.attrs["config"] == "original"


def test_resume_after_a_crashed_writer(tmp_path: Path) -> None:
    path, crashed = tmp_path / "results.h5", tmp_path / "crashed.h5"
    with ResultsWriter(path, COLUMNS) as writer:
        for generation in range(5):
            writer.append({"generation": generation, "popsize": 8})
        shutil.copyfile(path, crashed)  # as left by a writer killed now: still marked as open for writing
    with ResultsWriter(crashed, COLUMNS, resume=True) as writer:
        writer.append({"generation": 5, "popsize": 8})
    assert read_results(crashed)["generation"].tolist() == list(range(6))


def test_resume_with_other_columns_fails(tmp_path: Path) -> None:
    _write_rows(tmp_path / "results.h5", range(2))
    columns = {"generation": "int64", "mean_eval": "float32", "extra": "float64"}
    with pytest.raises(ValueError, match=r"extra: expected float64 \(None,\), found none.*mean_eval"):
        ResultsWriter(tmp_path / "results.h5", columns, resume=True)


def test_best_is_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    with ResultsWriter(path, COLUMNS, best_length=3, obs_length=2) as writer:
        writer.update_best([1.0, 2.0, 3.0], 10.0, 4, obs_mean=[0.0, 1.0], obs_stdev=[1.0, 2.0], obs_count=50)
        writer.update_best(np.array([4.0, 5.0, 6.0]), 12.5, 9)
        with pytest.raises(ValueError, match="Expected 3 values"):
            writer.update_best([1.0], 0.0, 1)
    with h5py.File(path, "r", swmr=True) as file:
        best = {name: dataset[...] for name, dataset in file["best"].items()}
    assert best["values"].tolist() == [4.0, 5.0, 6.0] and best["values"].dtype == np.float32
    assert (best["eval"].tolist(), best["generation"].tolist()) == ([12.5], [9])
    assert (best["obs_mean"].tolist(), best["obs_stdev"].tolist()) == ([0.0, 1.0], [1.0, 2.0])
    assert best["obs_count"].tolist() == [50]


def test_best_needs_its_lengths(tmp_path: Path) -> None:
    with (
        ResultsWriter(tmp_path / "a.h5", COLUMNS) as writer,
        pytest.raises(RuntimeError, match="best_length"),
    ):
        writer.update_best([1.0], 1.0, 1)
    with ResultsWriter(tmp_path / "b.h5", COLUMNS, best_length=1) as writer, pytest.raises(ValueError):
        writer.update_best([1.0], 1.0, 1, obs_mean=[0.0])


def test_batched_best_updates_are_written_on_flush_and_close_as_they_were_given(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    mean = np.array([0.0, 1.0])  # a live statistic that goes on changing after the update
    writer = ResultsWriter(path, COLUMNS, best_length=3, obs_length=2, flush_seconds=3600)
    try:
        writer.update_best([1.0, 2.0, 3.0], 10.0, 4, obs_mean=mean, obs_stdev=[1.0, 2.0], obs_count=50)
        mean += 5
        with pytest.raises(ValueError, match="Expected 3 values"):
            writer.update_best([1.0], 0.0, 1)  # checked when given, not when written
        with h5py.File(path, "r", swmr=True) as f:
            assert f["best/generation"][...].tolist() == [-1]  # not written yet: the fill value
        writer.flush()
        with h5py.File(path, "r", swmr=True) as f:
            assert f["best/generation"][...].tolist() == [4]
            assert f["best/obs_mean"][...].tolist() == [0.0, 1.0]
        writer.update_best([4.0, 5.0, 6.0], 12.5, 9, obs_mean=mean)
        writer.update_best([7.0, 8.0, 9.0], 13.0, 11)  # the latest update wins; omitted statistics stay
    finally:
        writer.close()
    with h5py.File(path, "r", swmr=True) as f:
        best = {name: dataset[...].tolist() for name, dataset in f["best"].items()}
    assert best["values"] == [7.0, 8.0, 9.0] and best["eval"] == [13.0] and best["generation"] == [11]
    assert best["obs_mean"] == [5.0, 6.0] and best["obs_stdev"] == [1.0, 2.0] and best["obs_count"] == [50]


_READER = """
    import sys, time
    from pathlib import Path
    from hpcne.io import read_results

    path, rows, go, done = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    counts = [len(read_results(path))]
    go.touch()
    deadline = time.monotonic() + 60
    while counts[-1] < rows and time.monotonic() < deadline:
        frame = read_results(path)
        assert frame["generation"].tolist() == list(range(len(frame)))
        counts.append(len(frame))
    done.touch()
    print(*counts)
"""


def _wait_for(flag: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{flag.name} never appeared"
        time.sleep(0.005)


def test_reader_process_sees_rows_while_the_writer_appends(tmp_path: Path) -> None:
    path, go, done, rows = tmp_path / "results.h5", tmp_path / "go", tmp_path / "done", 30
    with ResultsWriter(path, {"generation": "int64", "mean_eval": "float64"}) as writer:
        reader = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_READER), str(path), str(rows), str(go), str(done)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(go, reader)
            for generation in range(rows):
                writer.append({"generation": generation, "mean_eval": generation / 2})
                time.sleep(0.01)
            _wait_for(done, reader)  # the file stays open until the reader has seen every row
            output, errors = reader.communicate(timeout=60)
        finally:
            reader.kill()
    assert reader.returncode == 0, errors
    counts = [int(count) for count in output.split()]
    assert counts[0] == 0 and counts[-1] == rows
    assert counts == sorted(counts) and len(set(counts)) > 2


def test_batched_rows_are_written_on_flush_truncate_and_close(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    writer = ResultsWriter(path, COLUMNS, flush_seconds=3600)  # nothing is written by the clock in this test
    try:
        writer.append({"generation": 1, "mean_eval": 0.5, "popsize": 8})
        writer.append({"generation": 2, "mean_eval": 1.0, "popsize": 8})
        assert writer.last_generation == 2
        with pytest.raises(ValueError, match="greater than the last logged one"):
            writer.append({"generation": 2, "popsize": 8})  # checked against the pending rows too
        with h5py.File(path, "r", swmr=True) as f:
            assert len(f["log/generation"]) == 0
        writer.flush()
        with h5py.File(path, "r", swmr=True) as f:
            assert f["log/generation"][:].tolist() == [1, 2]
        writer.append({"generation": 3, "popsize": 8})
        writer.append({"generation": 4, "popsize": 8})
        writer.truncate(3)  # a pending row is written before the log is cut
        assert writer.last_generation == 3
        writer.append({"generation": 4, "mean_eval": 2.0, "popsize": 8})
    finally:
        writer.close()
    frame = read_results(path)
    assert frame["generation"].tolist() == [1, 2, 3, 4]
    assert frame["mean_eval"].tolist()[:2] == [0.5, 1.0] and frame["mean_eval"].iloc[3] == 2.0
    assert np.isnan(frame["mean_eval"].iloc[2])
