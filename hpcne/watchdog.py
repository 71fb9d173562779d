"""Hang detection: a process that evaluates and stops making progress ends the run, with its stack.

An exception or a dead worker ends a run at once; a worker stuck in ``env.step`` (a simulator
waiting on a lost licence server, a deadlocked C extension) would otherwise hold the whole job
until the batch time limit. Every evaluating process (the serial process, each pool worker, each
MPI rank) therefore runs a watchdog thread while it evaluates a piece of a population. Progress is
a *beat*: a solution or an episode starting (:func:`beat`, a counter increment). A piece with no
beat for ``hang_timeout`` seconds is a hang: the watchdog prints what the process was doing and
the Python stack of every thread to stderr, then ends the process with :data:`EXIT_HUNG` (an MPI
rank calls ``MPI_Abort`` with it, so the launcher ends every rank; the coordinator of a process
pool sees its worker die and reports it).

A hang inside C code that holds the GIL keeps the watchdog thread from running; for that case
:mod:`faulthandler` is armed too, a little later than the watchdog, and the thread re-arms it on
every beat it sees. faulthandler prints ``Timeout (h:mm:ss)!`` and the stacks, and exits with
status 1. (This takes over faulthandler's single countdown while a process evaluates.)

The timeout is ``HPCNE_HANG_TIMEOUT`` (seconds; ``0`` turns detection off), 600 s when unset;
``hpcne train --hang-timeout`` and the config key ``hang_timeout`` set it for a run.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["DEFAULT_HANG_TIMEOUT", "EXIT_HUNG", "beat", "configure", "hang_timeout", "set_hang_timeout", "watching"]

DEFAULT_HANG_TIMEOUT = 600.0
"""Seconds without a new solution or episode after which an evaluating process counts as hung."""

EXIT_HUNG = 124
"""Exit status of a process ended by the watchdog (as ``timeout(1)`` uses)."""

_ENV = "HPCNE_HANG_TIMEOUT"
_beats = 0


def beat() -> None:
    """Record progress: a solution or an episode has started."""
    global _beats
    _beats += 1


def hang_timeout() -> float | None:
    """The timeout in seconds from ``HPCNE_HANG_TIMEOUT`` (default 600), or None when it is off (0).

    Raises:
        ValueError: If the variable is not a non-negative number.
    """
    text = os.environ.get(_ENV, "").strip()
    if not text:
        return DEFAULT_HANG_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):  # also NaN
        raise ValueError(f"{_ENV}={text!r} is not a number of seconds; use e.g. 600, or 0 to turn hang detection off.")
    return seconds or None


def set_hang_timeout(seconds: float | None) -> None:
    """Set the timeout of this process and of the processes it starts (None or 0: off).

    Raises:
        ValueError: If ``seconds`` is negative or not finite.
    """
    if seconds is not None and not 0 <= seconds < float("inf"):
        raise ValueError(f"hang_timeout must be a non-negative number of seconds (0: off); got {seconds!r}.")
    os.environ[_ENV] = repr(float(seconds or 0))


class _Watchdog:
    """The process's watchdog thread and the state it watches."""

    def __init__(self) -> None:
        self.where = f"process {os.getpid()}"
        self.on_hang: Callable[[int], object] = os._exit
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._what: str | None = None  # the piece being evaluated; None when idle
        self._timeout = DEFAULT_HANG_TIMEOUT
        self._seen = 0  # beats at the last progress seen
        self._since = 0.0  # time of the last progress seen
        self._armed = False  # faulthandler's countdown is running

    @contextlib.contextmanager
    def watching(self, what: str) -> Iterator[None]:
        """Watch the evaluation in the ``with`` block (``what`` names it in the report).

        This costs the evaluating thread a few microseconds: the watchdog thread does the rest.
        """
        timeout = hang_timeout()
        if timeout is None:
            yield
            return
        with self._lock:
            self._timeout, self._what = timeout, what
            self._seen, self._since = _beats, time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hpcne-watchdog", daemon=True)
                self._thread.start()
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._what = None

    def _run(self) -> None:
        """Check for progress every quarter of the timeout (at most 5 s) while watching.

        faulthandler's countdown is (re)started on progress, so it only ends the process if this
        thread itself cannot run; it is stopped when the process has been idle for a whole period
        (arming it starts a thread: too slow to do for every piece of a population).
        """
        while True:
            period = min(self._timeout / 4, 5.0)
            self._wake.wait(period if self._armed else None)
            self._wake.clear()
            with self._lock:
                now = time.monotonic()
                if self._what is None:
                    if self._armed:
                        faulthandler.cancel_dump_traceback_later()
                        self._armed = False
                elif not self._armed or _beats != self._seen:
                    if _beats != self._seen:
                        self._seen, self._since = _beats, now
                    self._arm()
                elif now - self._since >= self._timeout:
                    self._report(self._what)

    def _arm(self) -> None:
        """(Re)start faulthandler's countdown, a little longer than the watchdog's (to the real stderr)."""
        faulthandler.dump_traceback_later(self._timeout + max(5.0, self._timeout / 4), exit=True, file=2)
        self._armed = True

    # faulthandler's countdown does not survive a fork, and a child that inherits it armed deadlocks
    # when it next arms or cancels it: so it is stopped around every fork and restarted in the parent.
    def before_fork(self) -> None:
        self._lock.acquire()
        if self._armed:
            faulthandler.cancel_dump_traceback_later()

    def after_fork_in_parent(self) -> None:
        if self._armed:
            self._arm()
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """No watchdog thread, no lock held by one, nothing watched."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._what = None
        self._armed = False

    def _report(self, what: str) -> None:
        """Print the hang and every thread's stack, then end the process (with the lock held)."""
        faulthandler.cancel_dump_traceback_later()
        print(
            f"hpcne: {self.where} made no progress for {self._timeout:g} s while evaluating {what}: no solution "
            "or episode started in that time. A hung environment, policy or fitness function? The stack of "
            f"every thread follows. If one episode really takes this long, raise the limit ({_ENV}, "
            "`--hang-timeout`, config `hang_timeout`; 0 turns it off).",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=2, all_threads=True)
        time.sleep(1.0)  # an MPI launcher forwards output through pipes; MPI_Abort would cut the report short
        self.on_hang(EXIT_HUNG)


_watchdog = _Watchdog()
os.register_at_fork(
    before=_watchdog.before_fork,
    after_in_parent=_watchdog.after_fork_in_parent,
    after_in_child=_watchdog.after_fork_in_child,
)


def configure(where: str, on_hang: Callable[[int], object] | None = None) -> None:
    """Name this process in hang reports, and say how it ends (default ``os._exit``; MPI: ``Abort``)."""
    _watchdog.where = where
    if on_hang is not None:
        _watchdog.on_hang = on_hang


def watching(what: str) -> contextlib.AbstractContextManager[None]:
    """Watch the evaluation of ``what`` (e.g. ``"solutions 8-11 of round 3"``) for hangs."""
    return _watchdog.watching(what)
