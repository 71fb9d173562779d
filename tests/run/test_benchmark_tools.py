"""The benchmark tools for real runs: benchmarks/replay.py (a recorded run's env calls, replayed bare, are
that run's trajectories) and benchmarks/engine.py."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.replay import Replayer, alternate, interleave, record, replay

ROOT = Path(__file__).resolve().parents[2]


def _record(tmp_path: Path, generations: int = 3) -> Path:
    log = tmp_path / "cartpole.npz"
    with contextlib.redirect_stdout(io.StringIO()):
        record(ROOT / "examples" / "cartpole-pgpe.toml", generations, log)
    return log


def test_a_replay_reproduces_the_recorded_run_and_counts_its_training_steps(tmp_path: Path) -> None:
    log = _record(tmp_path)
    data = np.load(log, allow_pickle=False)
    rounds, training, is_step = data["round"], data["training"], data["is_step"]
    assert set(rounds.tolist()) == {0, 1, 2}  # three training rounds; nothing logged outside them
    assert not training.all() and training.any()  # the centre evaluations (every generation here) are logged too
    # Every episode starts with a seeded reset: the trajectories depend on the log alone.
    assert (data["seed"][~is_step] >= 0).all()
    assert not is_step[0]
    for order in ("run", "by-slot"):
        result = replay(log, first_round=1, order=order)
        assert result["same_trajectories"], order
        assert result["steps"] == int((is_step & training & (rounds >= 1)).sum()) > 0
        assert result["all_steps"] == int((is_step & (rounds >= 1)).sum()) > result["steps"]  # centre steps too
        assert result["steps_per_s"] > 0


@pytest.mark.filterwarnings("ignore:.*calling 'step\\(\\)' even though")  # the tampered episodes run on
def test_a_replay_that_leaves_the_recorded_trajectories_says_so(tmp_path: Path) -> None:
    log = _record(tmp_path, generations=2)
    data = dict(np.load(log, allow_pickle=False))
    actions = data["action"]
    actions[data["is_step"]] = 1 - actions[data["is_step"]]  # CartPole pushes the other way
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **data)
    assert not replay(tampered)["same_trajectories"]


def test_a_replayer_finds_each_rounds_calls_in_their_order(tmp_path: Path) -> None:
    log = _record(tmp_path, generations=2)
    replayer = Replayer(log)
    rounds, training = replayer.rounds, replayer.training
    for r in (0, 1, 5):
        assert replayer.calls(r).tolist() == np.flatnonzero(rounds == r).tolist()
        assert replayer.calls(r, training=True).tolist() == np.flatnonzero((rounds == r) & training).tolist()
        assert replayer.calls(r, training=False).tolist() == np.flatnonzero((rounds == r) & ~training).tolist()
    assert len(replayer.calls(1, training=False)) > 0  # the centre evaluation after round 1


def test_alternating_runs_and_replays_each_round_of_the_same_run(tmp_path: Path) -> None:
    log = _record(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        found = alternate(ROOT / "examples" / "cartpole-pgpe.toml", 3, log, first_round=1)
    assert found["same_trajectories"]  # the second run made the calls the first one logged
    assert [row["round"] for row in found["rounds"]] == [1, 2]
    training = np.load(log)["training"] & np.load(log)["is_step"]
    rounds = np.load(log)["round"]
    assert [row["steps"] for row in found["rounds"]] == [int((training & (rounds == r)).sum()) for r in (1, 2)]
    assert all(row["hpcne_s"] > 0 and row["replay_s"] > 0 for row in found["rounds"])
    # The whole run: generation 1 (round 1) replayed whole, its centre evaluation's calls too, before round 2.
    assert (found["run_rounds"], found["run_steps"]) == (1, int((training & (rounds == 1)).sum()))
    assert found["run_replay_over_hpcne"] > 0
    # What the window holds besides the evaluations: the update, logging and a checkpoint, a part of it.
    assert 0 < found["run_outside_evaluations_share"] < 1 and found["run_outside_evaluations_ms_per_generation"] > 0
    # The example scores its centre every generation: those of generations 2 and 3 (after rounds 1 and 2).
    assert found["centre_evaluations"] == 2 and found["centre_replay_over_hpcne"] > 0


def test_interleaving_times_a_rounds_calls_the_engine_work_and_both(tmp_path: Path) -> None:
    log = _record(tmp_path, generations=2)
    found = interleave(ROOT / "examples" / "cartpole-pgpe.toml", log, 1, repeats=1)
    training = np.load(log)["training"] & np.load(log)["is_step"]
    assert found["steps"] == int((training & (np.load(log)["round"] == 1)).sum())
    assert found["slots"] > 1 and found["iterations"] > 0  # one iteration's work per pass over the slots
    assert min(found["calls_s"], found["work_s"], found["both_s"]) > 0
    assert math.isfinite(found["interference"])  # a difference of timings: its sign is the machine's
    with pytest.raises(ValueError, match="no training calls of round 99"):
        interleave(ROOT / "examples" / "cartpole-pgpe.toml", log, 99)


def test_the_engine_cost_runs_on_the_example_problem() -> None:
    from benchmarks.engine import engine_cost

    found = engine_cost(ROOT / "examples" / "cartpole-pgpe.toml", 4, calls=20, repeats=1)
    # A difference of two timings: its sign is the machine's business, not the test's.
    assert found["slots"] == 4 and math.isfinite(found["us_per_step"])


def test_the_cost_outside_the_evaluations_runs_the_example_with_free_evaluations() -> None:
    from benchmarks.outside import outside_cost

    found = outside_cost(ROOT / "examples" / "cartpole-pgpe.toml", 12)
    assert found["generations"] == 12 and found["ms_per_generation"] > 0


def _phases_file(directory: Path, pid: int, role: str, rank: int | None, seconds: dict[str, dict[str, float]]) -> None:
    record = {"role": role, "rank": rank, "pid": pid, "host": "h", "seconds": seconds, "started": {}}
    (directory / f"phases-h-{pid}.json").write_text(json.dumps(record))


def test_the_split_per_process_names_each_process_and_books_its_waiting_per_generation(tmp_path: Path) -> None:
    from benchmarks.examples import PHASES, per_process

    warm = {"env.step": 100.0}  # round 0 is the warm-up: left out
    _phases_file(tmp_path, 30, "worker", None, {"0": warm, "1": {"env.step": 0.5}, "2": {"env.step": 0.7}})
    _phases_file(tmp_path, 20, "worker", None, {"0": warm, "1": {"env.step": 0.25, "policy": 0.25}})
    _phases_file(tmp_path, 10, "coordinator", None, {"0": warm, "1": {"searcher update": 0.5}, "2": {"logging": 2.5}})
    rows = per_process(tmp_path, skip_rounds=1, seconds=2.0, generations=2)
    assert [row["process"] for row in rows] == ["coordinator", "worker 1", "worker 2"]  # workers in pid order
    coordinator, first, second = rows
    assert first["env.step"] == pytest.approx(125.0) and first["communication"] == pytest.approx(750.0)
    assert second["env.step"] == pytest.approx(600.0) and second["communication"] == pytest.approx(400.0)
    assert coordinator["searcher update"] == pytest.approx(250.0) and coordinator["communication"] == 0.0
    assert all(set(row) == {"process", *PHASES} for row in rows)

    mpi = tmp_path / "mpi"
    mpi.mkdir()
    _phases_file(mpi, 7, "worker", 1, {"1": {"env.step": 1.0}})
    _phases_file(mpi, 9, "coordinator", 0, {"1": {"env.step": 1.5}})
    assert [row["process"] for row in per_process(mpi, 1, 2.0, 1)] == ["rank 0", "rank 1"]
