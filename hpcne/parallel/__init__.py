"""Parallel evaluation runtimes: serial, a local process pool, and MPI ranks, behind one protocol."""

from __future__ import annotations

from hpcne.parallel.runtime import Runtime, SerialRuntime, make_runtime

__all__ = ["Runtime", "SerialRuntime", "make_runtime"]
