"""Joining an MPI job: how many ranks the launcher started, and ending the job when a rank fails.

An uncaught exception on one rank must not leave the others waiting in a collective until the
job's time limit. :func:`prepare_mpi_job` (run when :mod:`hpcne.parallel` is imported) makes
every rank of a multi-rank job initialize MPI early and installs :func:`install_mpi_excepthook`,
so that a rank that fails anywhere, even while building its problem, ends the whole job with a
message that names it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import stat
import struct
import sys
import termios
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "abort_job",
    "find_mpiexec",
    "install_mpi_excepthook",
    "launcher_world_size",
    "prepare_mpi_job",
    "unread_bytes",
    "wait_until_output_is_read",
]

# Variables through which launchers announce the job size: Open MPI, MPICH/Hydra and PMI-2
# (also srun --mpi=pmi2), PMIx, and srun's own.
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")

# How long a failing rank waits for the launcher to read its report before it aborts anyway. The
# reader is the launcher's forwarding process on the same node and reads as soon as it runs, so a
# loaded node delays it by milliseconds; waiting this long means it has stopped reading, and the
# job must still end.
OUTPUT_READ_SECONDS = 10.0
_POLL_SECONDS = 0.005


def find_mpiexec() -> str | None:
    """The ``mpiexec`` beside this interpreter (e.g. the ``mpich`` wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def launcher_world_size() -> int:
    """The number of processes the MPI launcher started (1 when not under a launcher)."""
    if "mpi4py.MPI" in sys.modules:
        return sys.modules["mpi4py.MPI"].COMM_WORLD.Get_size()
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def prepare_mpi_job() -> None:
    """Under a launcher with several ranks: initialize MPI and install the excepthook; else nothing."""
    if launcher_world_size() > 1:
        install_mpi_excepthook()


def unread_bytes(fd: int) -> int:
    """How many bytes written to the pipe ``fd`` (either end) its reader has not read yet."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def wait_until_output_is_read(fds: tuple[int, ...] = (1, 2), timeout: float = OUTPUT_READ_SECONDS) -> None:
    """Wait until whoever reads the pipes behind ``fds`` has read everything written to them.

    MPI launchers read each rank's stdout and stderr from pipes and forward them. An ``MPI_Abort``
    that reaches the launcher before it has read a rank's last output ends the job with that output
    lost: seen with MPICH's Hydra, where a failing rank's whole report vanished when the launcher
    was not scheduled between the rank's write and its abort. Only pipes are waited for (a file or a
    terminal keeps what was written); after ``timeout`` seconds this gives up.
    """
    deadline = time.monotonic() + timeout
    pipes = []
    for fd in fds:
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                pipes.append(fd)
        except OSError:  # closed
            continue
    for fd in pipes:
        while time.monotonic() < deadline:
            try:
                if unread_bytes(fd) == 0:
                    break
            except OSError:
                break
            time.sleep(_POLL_SECONDS)


def abort_job(status: int = 1) -> NoReturn:
    """End every rank of the MPI job with ``status`` once the launcher has read this rank's output."""
    from mpi4py import MPI

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: nothing more can be delivered
            continue
    wait_until_output_is_read()
    MPI.COMM_WORLD.Abort(status)
    raise SystemExit(status)  # not reached: Abort does not return


def _rank0_can_exit_cleanly() -> bool:
    """Whether the other ranks are released, or an idle MPI runtime will release them at exit."""
    mpi = sys.modules.get("hpcne.parallel.mpi")
    return mpi is not None and mpi.MPIRuntime.can_exit_cleanly()


def install_mpi_excepthook() -> None:
    """Make an uncaught exception end the whole MPI job instead of leaving other ranks waiting.

    A rank other than 0 prints the error with its rank and host and calls ``MPI_Abort``. Rank 0
    prints the error; it then exits normally (status 1) when its runtime can release the other
    ranks, and calls ``MPI_Abort`` when they may be waiting for it anywhere else.
    """
    from mpi4py import MPI

    if getattr(sys.excepthook, "_hpcne", False):
        return
    previous = sys.excepthook
    rank = MPI.COMM_WORLD.Get_rank()

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if rank == 0:
            previous(kind, value, tb)
            if _rank0_can_exit_cleanly() or MPI.COMM_WORLD.Get_size() == 1:
                return
        else:
            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stderr.write(f"hpcne: rank {rank} on host {socket.gethostname()} failed:\n{text}")
        abort_job(1)

    hook._hpcne = True  # type: ignore[attr-defined]
    sys.excepthook = hook
