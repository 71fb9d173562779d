"""The hang watcher: a tiny process that ends an evaluating process which cannot end itself.

:mod:`hpcne.watchdog` starts one per evaluating process (``python -I -S _hangwatch.py PAGE PIPE PID``).
It shares a page of memory with that process (its progress counter, whether it is evaluating, the
deadline and what it evaluates) and holds the read end of a pipe whose write end only that process
has. A process that holds the GIL in native code, or that was stopped (SIGSTOP, a debugger), cannot
run its own watchdog thread; from out here it is seen all the same. The watcher then prints what the
process was doing, asks it for its Python stacks (faulthandler, registered on :data:`DUMP_SIGNAL`,
prints them without the GIL) and kills it. An MPI launcher then ends the job; a process pool's
coordinator reports its dead worker. The watcher leaves as soon as the pipe reports its process gone.

Only the standard library, and no hpcne import: it starts in a few milliseconds.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import struct
import sys
import time

__all__ = ["DUMP_SIGNAL", "LAYOUT", "PAGE_SIZE", "STATE", "STATE_EVALUATING", "STATE_IDLE", "main"]

LAYOUT = struct.Struct("=qqdI")
"""The page's head: beats, state, deadline (seconds without a beat), text length; then the text,
``where`` and ``what`` joined by a NUL."""
STATE = struct.Struct("=qdI")
"""The head after the beat counter (at offset 8), which the watched process writes as a whole."""
PAGE_SIZE = mmap.PAGESIZE
STATE_IDLE, STATE_EVALUATING = 0, 1
DUMP_SIGNAL = signal.SIGRTMIN + 7  # a real-time signal that no launcher or library sends
_GRACE_SECONDS = 1.0  # for the stack dump to reach the (forwarded) stderr before the kill


def _process_state(pid: int) -> str:
    """``"stopped"`` for a stopped or traced process, else ``"running"`` (from /proc where there is one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "running"
    return "stopped" if state in (b"T", b"t") else "running"


def _kill(pid: int, text: str, seconds: float) -> None:
    """Report the hang, ask for the stacks, then kill the process."""
    where, _, what = text.partition("\0")
    how = (
        "it is stopped (SIGSTOP or a debugger), so its stack is printed only if it is continued"
        if _process_state(pid) == "stopped"
        else "it holds the GIL in native code (its Python stack follows)"
    )
    sys.stderr.write(
        f"hpcne: {where} made no progress for {seconds:.0f} s while evaluating {what}, and could not report "
        f"it itself: {how}. It is killed (SIGKILL), which ends the run. If one episode really takes this "
        "long, raise the limit (HPCNE_HANG_TIMEOUT, `--hang-timeout`, config `hang_timeout`; 0: off).\n"
    )
    sys.stderr.flush()
    try:
        os.kill(pid, DUMP_SIGNAL)
        time.sleep(_GRACE_SECONDS)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(page_fd: int, pipe_fd: int, pid: int) -> None:
    """Watch process ``pid`` through the shared page until the pipe says it is gone."""
    page = mmap.mmap(page_fd, PAGE_SIZE)
    os.close(page_fd)
    seen, since, last_wake = -1, time.monotonic(), time.monotonic()
    while True:
        beats, state, deadline, length = LAYOUT.unpack_from(page)
        period = min(max(deadline / 8, 0.1), 2.0) if deadline > 0 else 2.0
        if select.select([pipe_fd], [], [], period)[0] and not os.read(pipe_fd, 64):
            return  # the watched process is gone (the pipe's only writer)
        now = time.monotonic()
        # A wake-up much later than asked means this watcher was stopped or starved too (Ctrl-Z on the
        # whole job, a loaded machine): the time that passed says nothing about the watched process.
        lost = now - last_wake > 2 * period + 1.0
        last_wake = now
        beats, state, deadline, length = LAYOUT.unpack_from(page)
        if state != STATE_EVALUATING or beats != seen or lost:
            seen, since = beats, now
        elif deadline > 0 and now - since > deadline:
            text = page[LAYOUT.size : LAYOUT.size + length].decode("utf-8", "replace")
            _kill(pid, text, now - since)
            return


if __name__ == "__main__":
    # Signals sent to the whole job (Ctrl-C, SLURM's SIGTERM) are for the watched process to handle:
    # the watcher leaves when that process is gone.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if os.fork():  # the starter waits for this first process only: no zombie, nothing to reap later
        os._exit(0)
    main(*(int(arg) for arg in sys.argv[1:4]))
