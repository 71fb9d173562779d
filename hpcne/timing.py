"""An opt-in split of a run's time by phase, per process: ``HPCNE_PROFILE=DIR`` (off, and free, by default).

With the variable set, every process of a run (the serial process, each pool worker, each MPI
rank) times its phases and rewrites ``DIR/phases-<host>-<pid>.json`` after each evaluation: the
seconds of each phase per evaluation round (so that a benchmark can leave out the warm-up), and
when the coordinator started each round.
Without the variable nothing is wrapped and nothing is timed.

Two kinds of phases:

- **calls** (:func:`timed`), in the rollout engine's step loop: ``env.step``, ``env.reset``
  (episode starts: the policy's parameter load and the seeded reset), ``policy``, ``obs-norm``
  (normalising observations and summing their statistics);
- **blocks** (:func:`block`), each booked *exclusively* (its time less the calls and blocks
  inside it): ``engine`` (the step loop's own bookkeeping), ``communication`` (an evaluation
  round less this process's rollouts: messages, and waiting for other workers), ``searcher
  update``, ``logging``, ``checkpoint``; ``centre evaluation`` *absorbs* the calls inside it, so
  that its rollouts do not count as training's.

A timed call costs about half a microsecond, so the split describes a run slowed by that much;
benchmarks measure steps/s in runs without it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["PROFILE_ENV", "Phases", "active", "block", "dump", "rollouts", "set_key", "timed"]

PROFILE_ENV = "HPCNE_PROFILE"
F = TypeVar("F", bound=Callable[..., Any])


class Phases:
    """Seconds per (evaluation round, phase) of one process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.role = "worker"
        self.key = "start"
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.started: dict[str, float] = {}  # key -> when the coordinator started it (perf_counter)
        self._calls = 0.0  # seconds booked by timed calls so far, under any key
        self._inner: list[list[float]] = []  # per open block: [seconds of the blocks inside it, less their calls]
        self._absorb: str | None = None

    def timed(self, name: str, fn: F) -> F:
        """``fn``, timing each call into ``name`` (or into the absorbing block around it)."""
        clock = time.perf_counter

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds = clock() - started
                self.seconds[self.key][self._absorb or name] += seconds
                self._calls += seconds

        return wrapper  # type: ignore[return-value]

    @contextmanager
    def block(self, name: str, *, absorb: bool = False) -> Iterator[None]:
        """Book the block's time less the calls and blocks inside it to ``name`` (``absorb``: with its calls)."""
        started, calls_before, inner = time.perf_counter(), self._calls, [0.0]
        key, outer_absorb = self.key, self._absorb
        self._inner.append(inner)
        if absorb:
            self._absorb = name
        try:
            yield
        finally:
            total = time.perf_counter() - started
            self._inner.pop()
            self._absorb = outer_absorb
            calls = self._calls - calls_before
            self.seconds[key][name] += total - inner[0] - calls
            if self._inner:
                self._inner[-1][0] += total - calls  # the enclosing block leaves out my time (calls: itself)

    @property
    def nested(self) -> bool:
        """Whether a block is open (its key stands)."""
        return bool(self._inner)

    def dump(self) -> None:
        """Rewrite this process's JSON file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"phases-{socket.gethostname()}-{self.pid}.json"
        record = {
            "role": self.role,
            "rank": _launcher_rank(),
            "pid": self.pid,
            "host": socket.gethostname(),
            "seconds": {k: dict(v) for k, v in self.seconds.items()},
            "started": self.started,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)


def _launcher_rank() -> int | None:
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


_phases: Phases | None = None


def active() -> Phases | None:
    """This process's timer, or None when ``HPCNE_PROFILE`` is not set (a forked worker starts afresh)."""
    global _phases
    directory = os.environ.get(PROFILE_ENV)
    if not directory:
        return None
    if _phases is None or _phases.pid != os.getpid():
        _phases = Phases(Path(directory))
    return _phases


def timed(name: str, fn: F) -> F:
    """``fn`` timed into ``name`` when profiling, else ``fn`` itself."""
    phases = active()
    return fn if phases is None else phases.timed(name, fn)


def block(name: str, *, absorb: bool = False) -> Any:
    """A context manager booking its block to ``name`` when profiling (see :meth:`Phases.block`)."""
    phases = active()
    return nullcontext() if phases is None else phases.block(name, absorb=absorb)


def set_key(key: int | str, *, role: str | None = None) -> None:
    """Book what follows under evaluation round ``key``; ``role`` names this process in the file."""
    phases = active()
    if phases is not None:
        phases.key = str(key)
        phases.started[phases.key] = time.perf_counter()
        if role is not None:
            phases.role = role


@contextmanager
def rollouts(eval_round: int) -> Iterator[None]:
    """Time a piece's rollouts (the ``engine`` block) under ``eval_round``, then write the file."""
    phases = active()
    if phases is None:
        yield
        return
    if not phases.nested:  # a worker: the round is its own; in the coordinator an open block keeps the generation's
        phases.key = str(eval_round)
    try:
        with phases.block("engine"):
            yield
    finally:
        phases.dump()


def dump() -> None:
    """Write this process's phases, when profiling."""
    phases = active()
    if phases is not None:
        phases.dump()
