"""Hang detection: a process that evaluates and stops making progress ends the run, with its stack.

An exception or a dead worker ends a run at once; a worker stuck in ``env.step`` (a simulator
waiting on a lost licence server, a deadlocked C extension) would otherwise hold the whole job
until the batch time limit. Progress is a *beat*: a solution or an episode starting (:func:`beat`,
a counter increment). A piece of a population with no beat for ``hang_timeout`` seconds is a hang.
Every evaluating process (the serial process, each pool worker, each MPI rank) is watched twice:

- from inside, by a watchdog thread: it prints what the process was doing and the Python stack of
  every thread to stderr, then ends the process with :data:`EXIT_HUNG` (an MPI rank calls
  ``MPI_Abort`` with it, so the launcher ends every rank; a pool's coordinator reports its worker);
- from outside, by a small watcher process (:mod:`hpcne._hangwatch`) that reads the beat counter
  from shared memory. It needs nothing from the watched process, so it also sees a process that
  holds the GIL in native code or was stopped (SIGSTOP), which no thread inside can report. It acts
  a little later than the thread (a quarter of the timeout, at least 5 s): it prints the hang, has
  faulthandler print the stacks, and kills the process (SIGKILL).

A process that calls ``os._exit`` while it evaluates says so on stderr before it goes (rank, host,
solutions), as user code that leaves this way would otherwise end an MPI job without a word.

The timeout is ``HPCNE_HANG_TIMEOUT`` (seconds; ``0`` turns detection off), 600 s when unset;
``hpcne train --hang-timeout`` and the config key ``hang_timeout`` set it for a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import mmap
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hpcne import _hangwatch

__all__ = ["DEFAULT_HANG_TIMEOUT", "EXIT_HUNG", "beat", "configure", "hang_timeout", "set_hang_timeout", "watching"]

DEFAULT_HANG_TIMEOUT = 600.0
"""Seconds without a new solution or episode after which an evaluating process counts as hung."""

EXIT_HUNG = 124
"""Exit status of a process ended by the watchdog (as ``timeout(1)`` uses)."""

_ENV = "HPCNE_HANG_TIMEOUT"
_real_exit = os._exit


def _new_page() -> tuple[mmap.mmap, int, ctypes.c_int64]:
    """A zeroed page to share with the watcher process: the mapping, its file descriptor, the beat counter."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("hpcne-watchdog")
    else:  # not Linux: an unlinked temporary file
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, _hangwatch.PAGE_SIZE)
    page = mmap.mmap(fd, _hangwatch.PAGE_SIZE)
    return page, fd, ctypes.c_int64.from_buffer(page)


_page, _page_fd, _beats = _new_page()


def beat() -> None:
    """Record progress: a solution or an episode has started."""
    _beats.value += 1


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
        self.on_hang: Callable[[int], object] = _real_exit
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._what: str | None = None  # the piece being evaluated; None when idle
        self._timeout = DEFAULT_HANG_TIMEOUT
        self._seen = 0  # beats at the last progress seen
        self._since = 0.0  # time of the last progress seen
        self._pipe: int | None = None  # the write end of the watcher's pipe: closing it releases the watcher

    @contextlib.contextmanager
    def watching(self, what: str) -> Iterator[None]:
        """Watch the evaluation in the ``with`` block (``what`` names it in the report).

        This costs the evaluating thread a few microseconds: the watchdog thread does the rest.
        """
        timeout = hang_timeout()
        if timeout is None:
            yield
            return
        text = f"{self.where}\0{what}".encode()[: _hangwatch.PAGE_SIZE - _hangwatch.LAYOUT.size]
        _page[_hangwatch.LAYOUT.size : _hangwatch.LAYOUT.size + len(text)] = text
        outside = timeout + max(5.0, timeout / 4)  # the thread inside reports first when it can run
        _hangwatch.STATE.pack_into(_page, 8, _hangwatch.STATE_EVALUATING, outside, len(text))
        with self._lock:
            self._timeout, self._what = timeout, what
            self._seen, self._since = _beats.value, time.monotonic()
            if self._thread is None:
                self._start()
        self._wake.set()
        try:
            yield
        finally:
            _hangwatch.STATE.pack_into(_page, 8, _hangwatch.STATE_IDLE, outside, len(text))
            with self._lock:
                self._what = None

    def _start(self) -> None:
        """Start the watchdog thread and the watcher process; report ``os._exit`` calls from now on."""
        self._thread = threading.Thread(target=self._run, name="hpcne-watchdog", daemon=True)
        self._thread.start()
        faulthandler.register(_hangwatch.DUMP_SIGNAL, file=2, all_threads=True)
        read, self._pipe = os.pipe()
        command = [sys.executable, "-I", "-S", Path(_hangwatch.__file__), _page_fd, read, os.getpid()]
        subprocess.run(
            [str(arg) for arg in command],
            pass_fds=(_page_fd, read),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )  # returns once the watcher has detached itself
        os.close(read)
        os._exit = _exit_reporting

    def _run(self) -> None:
        """Check for progress every quarter of the timeout (at most 5 s) while watching."""
        while True:
            self._wake.wait(min(self._timeout / 4, 5.0) if self._what is not None else None)
            self._wake.clear()
            with self._lock:
                now = time.monotonic()
                if self._what is None:
                    continue
                if _beats.value != self._seen:
                    self._seen, self._since = _beats.value, now
                elif now - self._since >= self._timeout:
                    self._report(self._what)

    def after_fork_in_child(self) -> None:
        """No watchdog thread, no watcher, no lock held by one, nothing watched; a page of its own."""
        global _page, _page_fd, _beats
        if self._pipe is not None:
            os.close(self._pipe)  # else the parent's watcher would outlive the parent
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._pipe = None
        self._what = None
        os.close(_page_fd)
        _page, _page_fd, _beats = _new_page()

    def _report(self, what: str) -> None:
        """Print the hang and every thread's stack, then end the process (with the lock held)."""
        _hangwatch.STATE.pack_into(_page, 8, _hangwatch.STATE_IDLE, 0.0, 0)  # reported here: the watcher stands down
        print(
            f"hpcne: {self.where} made no progress for {self._timeout:g} s while evaluating {what}: no solution "
            "or episode started in that time. A hung environment, policy or fitness function? The stack of "
            f"every thread follows. If one episode really takes this long, raise the limit ({_ENV}, "
            "`--hang-timeout`, config `hang_timeout`; 0 turns it off).",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=2, all_threads=True)
        self.on_hang(EXIT_HUNG)


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog.after_fork_in_child)


def _exit_reporting(status: int) -> None:
    """``os._exit`` while the watchdog runs: say so first if it ends an evaluation (user code)."""
    what = _watchdog._what
    if what is not None:
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"hpcne: {_watchdog.where} called os._exit({status}) while evaluating {what}: user code ended "
                "the process without an error, which ends the run.\n"
            )
            sys.stderr.flush()
    _real_exit(status)


def configure(where: str, on_hang: Callable[[int], object] | None = None) -> None:
    """Name this process in hang reports, and say how it ends (default ``os._exit``; MPI: ``Abort``)."""
    _watchdog.where = where
    if on_hang is not None:
        _watchdog.on_hang = on_hang


def watching(what: str) -> contextlib.AbstractContextManager[None]:
    """Watch the evaluation of ``what`` (e.g. ``"solutions 8-11 of round 3"``) for hangs."""
    return _watchdog.watching(what)
