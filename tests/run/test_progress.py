"""The progress line: what it shows, and a time left that follows the recent pace."""

from __future__ import annotations

import io
import math

import pytest

from hpcne.config import RunConfig
from hpcne.progress import ETA_WINDOW, Progress, format_duration


def _row(generation: int, interactions: int, center: float = math.nan) -> dict[str, float]:
    return {
        "generation": generation,
        "best_eval": 10.0,
        "mean_eval": 5.0,
        "pop_best_eval": 9.0,
        "center_eval": center,
        "interaction_count": interactions,
    }


def test_the_time_left_follows_the_pace_of_the_last_generations(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("hpcne.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    progress = Progress(out, RunConfig(generations=100), 0, 0, has_center=True)
    for generation in range(1, 41):  # 1 s per generation for 30, then 10 s per generation
        clock[0] += 1.0 if generation <= 30 else 10.0
        progress.update(_row(generation, 1000 * generation, center=5.0 if generation % 2 else math.nan))
    lines = out.getvalue().splitlines()
    assert lines[29].endswith("ETA 1m10s")  # 70 generations left at 1 s
    assert lines[39].endswith(f"ETA {format_duration(60 * 10.0)}")  # the last ETA_WINDOW were all slow
    assert ETA_WINDOW == 10
    assert "center 5.00 (gen 39)" in lines[39] and "interactions 40,000 (100/s)" in lines[39]


def test_the_time_left_takes_the_interaction_budget_when_it_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("hpcne.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    progress = Progress(out, RunConfig(generations=1000, max_interactions=5000), 0, 0, has_center=False)
    for generation in range(1, 4):
        clock[0] += 2.0
        progress.update(_row(generation, 1000 * generation))
    last = out.getvalue().splitlines()[-1]
    assert last.endswith("ETA 4s") and " pop best 9.00 " in last and "center" not in last


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (3599, "59m59s"), (7260, "2h01m"), (math.inf, "?")]
)
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
