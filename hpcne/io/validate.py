"""Safe HDF5 I/O: read files that may be damaged or crafted without hanging or over-allocating, and write
only where the disk has room.

A run directory may come from a crashed job, a full disk or a colleague. Two HDF5 behaviours make such
files dangerous to read as they are:

- A reader in SWMR mode (needed to read a results file while its run writes it) retries a metadata read
  that fails its checksum, with an exponentially growing sleep: about 100 attempts by default, so a
  truncated or bit-flipped file holds the reader for hours, in C code that ignores SIGTERM.
  :func:`open_for_reading` bounds the attempts (:data:`METADATA_READ_ATTEMPTS`).
- A dataset may keep its data in another file (external storage, virtual datasets), or declare far more
  data than the file holds (a chunked dataset never written). :func:`check_dataset` refuses those before a
  byte is read.

A write that meets a full disk (ENOSPC) can make HDF5 crash (a segfault while it closes the file) rather
than fail; :func:`require_free_space` is checked before each write instead.
"""

from __future__ import annotations

import ctypes
import math
import os
from functools import cache
from pathlib import Path

import h5py

__all__ = ["METADATA_READ_ATTEMPTS", "DamagedFileError", "check_dataset", "open_for_reading", "require_free_space"]

METADATA_READ_ATTEMPTS = 12
"""Reads of a piece of metadata before a checksum failure is final. A live writer's torn update heals
within a few attempts; HDF5's backoff between attempts doubles, so 12 attempts take milliseconds
where the default 100 take hours."""


class DamagedFileError(OSError):
    """An HDF5 file cannot be read as it is; the message names the file and the cause."""


def open_for_reading(path: str | Path, *, swmr: bool = True) -> h5py.File:
    """Open an HDF5 file read-only, without file locks, with bounded metadata retries.

    Raises:
        FileNotFoundError: There is no such file.
        DamagedFileError: HDF5 cannot open it (truncated, damaged, not HDF5).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)  # what h5py.File does: closing closes every object
    _bound_metadata_read_attempts(fapl)
    fapl.set_file_locking(False, True)  # a reader must not block, or be blocked by, a writer
    flags = h5py.h5f.ACC_RDONLY | (h5py.h5f.ACC_SWMR_READ if swmr else 0)
    try:
        return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl))
    except Exception as err:
        raise DamagedFileError(f"{path} cannot be read as an HDF5 file ({err}).") from err


def check_dataset(dataset: h5py.Dataset) -> None:
    """Refuse a dataset whose data is not fully inside its file, before reading a byte of it.

    Raises:
        ValueError: External storage, a virtual dataset, a filter (hpcne never compresses), or a
            declared size larger than the data the file holds (a few kilobytes of file must not make
            the reader allocate gigabytes).
    """
    if dataset.external or dataset.is_virtual:
        raise ValueError(f"{dataset.name!r} keeps its data outside the file; hpcne never writes that")
    if dataset.shape is None:  # h5py.Empty: no data
        return
    if dataset.id.get_create_plist().get_nfilters():
        raise ValueError(f"{dataset.name!r} is filtered (compressed); hpcne never writes that")
    size = dataset.dtype.itemsize * math.prod(dataset.shape)
    stored = dataset.id.get_storage_size()
    if stored < size:
        raise ValueError(f"{dataset.name!r} declares {size} bytes of data but the file holds {stored}")


def require_free_space(path: str | Path, needed: int) -> None:
    """Raise before writing ``needed`` bytes to ``path`` on a disk that lacks them.

    Raises:
        OSError: Not enough free space; the message names the file and says what to do.
    """
    path = Path(path)
    disk = os.statvfs(path.parent)
    free = disk.f_bavail * disk.f_frsize
    if free < needed:
        raise OSError(
            f"Not enough free space to write {path}: {free / 2**20:.1f} MiB free, about {needed / 2**20:.1f} MiB "
            "needed. Free some space, then resume the run (what was written before is kept)."
        )


def _bound_metadata_read_attempts(fapl: h5py.h5p.PropFAID) -> None:
    """``H5Pset_metadata_read_attempts`` (h5py does not wrap it), on the HDF5 library h5py loaded."""
    function = _set_metadata_read_attempts()
    if function is not None:
        function(fapl.id, METADATA_READ_ATTEMPTS)


@cache
def _set_metadata_read_attempts() -> ctypes._CFuncPtr | None:
    """The C function from the libhdf5 mapped into this process (None if it cannot be found)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "libhdf5" in line and "_hl" not in line}
    except OSError:
        return None
    for library in sorted(paths):
        try:
            function = ctypes.CDLL(library).H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
        return function
    return None
