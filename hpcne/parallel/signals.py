"""Stop requests: signal handlers only set a flag; ranks agree on stopping at a generation boundary."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterable

__all__ = [
    "STOP_SIGNALS",
    "Interrupted",
    "clear_stop",
    "ignore_stop_signals",
    "install_stop_handlers",
    "request_stop",
    "settle",
    "stop_requested",
    "stop_signal",
]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
_FIRST_CTRL_C = b"\nhpcne: stopping after this generation, with a checkpoint (Ctrl-C again: stop at once)\n"
_event = threading.Event()
_received: list[int] = []
_settled = False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C pressed twice: stop now, abandoning the generation (the last checkpoint stays).

    A subclass, so that a ``KeyboardInterrupt`` raised by user code (an environment, a fitness
    function) is told apart from the user's own and reported as that solution's failure.
    """


def _handler(signum: int, _frame: object) -> None:
    if signum == signal.SIGINT and signal.SIGINT in _received and not _settled:
        raise Interrupted
    _received.append(signum)
    _event.set()
    if signum == signal.SIGINT and sys.stderr is not None and sys.stderr.isatty():
        os.write(2, _FIRST_CTRL_C)


def install_stop_handlers(signals: Iterable[int] = STOP_SIGNALS) -> None:
    """Make the given signals request a stop instead of killing the process (main thread only).

    A second SIGINT (Ctrl-C pressed twice) raises :class:`Interrupted` (a KeyboardInterrupt): the
    generation in progress is abandoned and the run ends at once; the last checkpoint written stays
    valid. After :func:`settle` it only requests a stop.
    """
    for sig in signals:
        signal.signal(sig, _handler)


def ignore_stop_signals() -> None:
    """Ignore the stop signals from now on: the process has finished its work and is exiting.

    Python's finalization puts the default handlers back (not an ignored signal), so without this a
    Ctrl-C landing while a finished process shuts down would kill it and turn its exit status (75:
    "resume me", or 0) into a death by SIGINT. Main thread only.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def settle() -> None:
    """From now on a second SIGINT only requests a stop, as the first one did.

    For a process with nothing to abandon: an MPI worker rank (rank 0 decides when the job stops;
    a worker that left on its own would leave the others waiting in a collective) and a run whose
    stop checkpoint is written (its exit status stays 75, "resume me").
    """
    global _settled
    _settled = True


def request_stop() -> None:
    """Ask the run to stop at the next generation boundary."""
    _event.set()


def stop_requested() -> bool:
    """Whether this process was asked to stop."""
    return _event.is_set()


def stop_signal() -> str | None:
    """The name of the first stop signal received, if any."""
    return signal.Signals(_received[0]).name if _received else None


def clear_stop() -> None:
    """Forget earlier stop requests (a new run starts)."""
    global _settled
    _event.clear()
    _received.clear()
    _settled = False
