"""The run directory's lock: one training run writes a run directory at a time.

Two ``hpcne train`` on one directory would interleave their checkpoints and results rows. The
writer (rank 0) holds an advisory POSIX lock (``fcntl.lockf``, which NFS v4 and Lustre honour) on
``RUN_DIR/.lock`` while it runs, and writes its host, pid and start time into the file, so that a
second writer is refused with a message that names the holder. The kernel (or the file server)
drops the lock when its holder dies, so a lock file left by a killed run never blocks; a lock that
a shared filesystem keeps for a holder that no longer runs is reported as stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["LOCK_FILENAME", "RunDirLock", "RunDirLocked"]

LOCK_FILENAME = ".lock"


class RunDirLocked(RuntimeError):
    """Another process holds the run directory's lock; the message names it and says what to do."""


class RunDirLock:
    """The lock of one run directory, held from :meth:`acquire` to :meth:`release` (or the process's end).

    The lock belongs to the process (POSIX record-lock semantics): acquiring it again in the same
    process succeeds, and no other code may open and close the lock file while it is held.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record this process as its holder.

        Raises:
            RunDirLocked: Another process holds it.
            OSError: The lock file cannot be created (e.g. a read-only directory).
        """
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirLocked(self._refusal(holder)) from None
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race with a process about to lock it)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def _refusal(self, holder: dict[str, object]) -> str:
        run_dir = self.path.parent
        if not holder:
            who = "another process (its host and pid are not recorded yet)"
        else:
            who = f"hpcne on host {holder.get('host')}, pid {holder.get('pid')} (since {holder.get('started')})"
        text = (
            f"{run_dir} is in use by {who}: two runs writing one directory would mix their checkpoints and "
            "results. Wait for that run to end (or stop it), or use another --run-dir."
        )
        if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
            text += (
                f" That process no longer runs on this host: the lock is stale, kept by a shared filesystem "
                f"until its lease ends (usually within two minutes). Retry then, or remove {self.path}."
            )
        return text


def _read_holder(fd: int) -> dict[str, object]:
    """The holder recorded in the lock file, or {} when it cannot be read (not written yet, garbled)."""
    try:
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid: object) -> bool:
    """Whether a process with this pid runs on this host (True when unsure)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
