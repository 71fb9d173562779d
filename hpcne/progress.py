"""The training progress display: a live bar on a terminal, plain lines in batch logs, with rate and ETA."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, TextIO

from hpcne.config import RunConfig

__all__ = ["ETA_WINDOW", "Progress", "format_duration"]

ETA_WINDOW = 10
"""Generations whose pace the time left is estimated from."""


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``?`` for an unknown (NaN or infinite) duration."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Shows each generation: evaluations, interactions per second and the time left.

    The center's evaluation is shown with the generation it was made at when it is not made every
    generation (``eval_center_every``), and left out for searchers without a center (GA). The time
    left is the sooner of the generation limit and the interaction budget, at the pace of the last
    `ETA_WINDOW` generations (generations grow longer as the policies learn to survive).
    """

    def __init__(self, out: TextIO, config: RunConfig, start: int, interactions: int, *, has_center: bool) -> None:
        self._out, self._config = out, config
        self._has_center = has_center and config.eval_center_every > 0
        self._recent: deque[tuple[float, int, int]] = deque([(time.monotonic(), start, interactions)], ETA_WINDOW + 1)
        self._last = (time.monotonic(), interactions)
        self._center: tuple[int, float] | None = None
        self._bar: Any = None
        if out.isatty():
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("gen {task.completed}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("train", total=config.generations, completed=start, info="")
            self._bar.start()

    def update(self, row: dict[str, Any]) -> None:
        """Show the log row of a finished generation."""
        info = self.describe(row)
        if self._bar is not None:
            self._bar.update(self._task, completed=row["generation"], info=info)
        elif row["generation"] % self._config.log_interval == 0:
            total = f"/{self._config.generations}" if self._config.generations else ""
            print(f"gen {row['generation']}{total}  {info}", file=self._out, flush=True)

    def describe(self, row: dict[str, Any]) -> str:
        """The progress text of one log row (the rate covers the generations since the last call)."""
        now = time.monotonic()
        generation, interactions = row["generation"], row["interaction_count"]
        t_last, steps_last = self._last
        rate = (interactions - steps_last) / max(now - t_last, 1e-9)
        self._last = (now, interactions)
        parts = [f"best {row['best_eval']:.2f}", f"mean {row['mean_eval']:.2f}"]
        if not math.isnan(row["center_eval"]):
            self._center = (generation, row["center_eval"])
        if self._has_center and self._center is not None:
            at, value = self._center
            parts.append(f"center {value:.2f}" + (f" (gen {at})" if at != generation else ""))
        elif not self._has_center:
            parts.append(f"pop best {row['pop_best_eval']:.2f}")
        parts += [f"interactions {interactions:,} ({rate:,.0f}/s)", f"ETA {format_duration(self._eta(row, now))}"]
        return "  ".join(parts)

    def _eta(self, row: dict[str, Any], now: float) -> float:
        self._recent.append((now, row["generation"], row["interaction_count"]))
        t0, generation0, interactions0 = self._recent[0]
        elapsed, done = now - t0, row["generation"] - generation0
        left = [math.inf]
        if self._config.generations is not None and done > 0:
            left.append(elapsed / done * (self._config.generations - row["generation"]))
        steps = row["interaction_count"] - interactions0
        if self._config.max_interactions is not None and steps > 0:
            left.append(elapsed / steps * (self._config.max_interactions - row["interaction_count"]))
        return max(0.0, min(left))

    def close(self) -> None:
        """Stop the live bar (plain lines need nothing)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
