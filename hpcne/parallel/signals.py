"""Stop requests: signal handlers only set a flag; ranks agree on stopping at a generation boundary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable

__all__ = [
    "STOP_SIGNALS",
    "clear_stop",
    "install_stop_handlers",
    "request_stop",
    "stop_requested",
    "stop_signal",
]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
_event = threading.Event()
_received: list[int] = []


def _handler(signum: int, _frame: object) -> None:
    _received.append(signum)
    _event.set()


def install_stop_handlers(signals: Iterable[int] = STOP_SIGNALS) -> None:
    """Make the given signals request a stop instead of killing the process (main thread only)."""
    for sig in signals:
        signal.signal(sig, _handler)


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
    _event.clear()
    _received.clear()
