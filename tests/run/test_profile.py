"""The opt-in time split (``HPCNE_PROFILE``, hpcne/timing.py): exclusive phases per round and process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import Cli

from hpcne import timing


class _Clock:
    """A clock the test moves by hand, so that the booked seconds are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_blocks_are_exclusive_and_an_absorbing_block_keeps_its_calls(tmp_path: Path, monkeypatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    phases = timing.Phases(tmp_path)

    def step() -> None:
        clock.now += 2

    timed_step = phases.timed("env.step", step)
    with phases.block("outer"):
        clock.now += 1
        timed_step()
        with phases.block("inner"):
            clock.now += 3
            timed_step()
        with phases.block("centre evaluation", absorb=True):
            clock.now += 1
            timed_step()
    booked = phases.seconds["start"]
    assert dict(booked) == {"env.step": 4, "inner": 3, "centre evaluation": 3, "outer": 1}
    assert sum(booked.values()) == clock.now  # nothing counted twice, nothing left out


def test_nothing_is_wrapped_without_the_variable(monkeypatch) -> None:
    monkeypatch.delenv(timing.PROFILE_ENV, raising=False)

    def fn() -> int:
        return 1

    assert timing.active() is None and timing.timed("x", fn) is fn


@pytest.mark.parametrize("workers", [1, 2])
def test_a_profiled_run_writes_every_process_split(tmp_path: Path, workers: int) -> None:
    profile, run_dir = tmp_path / "phases", tmp_path / "run"
    args = ["train", "--env", "CartPole-v1", "--popsize", "8", "--episode-length", "50", "--seed", "3",
            "--obs-norm", "--generations", "3", "--workers", str(workers), "--run-dir", str(run_dir)]  # fmt: skip
    done = Cli(tmp_path).run(args, HPCNE_PROFILE=str(profile))
    assert done.returncode == 0, done.output
    records = [json.loads(path.read_text()) for path in profile.glob("phases-*.json")]
    roles = sorted(record["role"] for record in records)
    assert roles == (["coordinator"] if workers == 1 else ["coordinator", "worker", "worker"])
    coordinator = next(record for record in records if record["role"] == "coordinator")
    assert sorted(coordinator["seconds"]) == ["0", "1", "2"]  # one key per evaluation round
    evaluating = [coordinator] if workers == 1 else [r for r in records if r["role"] == "worker"]
    for name in ("env.step", "env.reset", "policy", "obs-norm", "engine"):
        assert sum(r["seconds"][k].get(name, 0.0) for r in evaluating for k in r["seconds"]) > 0, name
    for name in ("searcher update", "logging", "centre evaluation"):
        assert all(coordinator["seconds"][k][name] > 0 for k in ("1", "2")), name
    # The coordinator's exclusive phases of a generation add up to no more than the generation took.
    started = coordinator["started"]
    for key, following in (("0", "1"), ("1", "2")):
        assert sum(coordinator["seconds"][key].values()) <= started[following] - started[key]
