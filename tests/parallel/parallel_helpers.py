"""Helpers for the parallel tests: a cheap problem, and scripts run in a subprocess (under ``mpiexec``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from hpcne.core import Problem
from hpcne.parallel.launch import find_mpiexec

HERE = Path(__file__).resolve().parent
MPIEXEC_TIMEOUT = 60  # the launcher kills a hung job after this many seconds
SUBPROCESS_TIMEOUT = 90  # and the test gives up on the launcher after this many


def mpiexec() -> str:
    """The ``mpiexec`` that belongs to this interpreter's environment (the ``mpich`` wheel's)."""
    found = find_mpiexec()
    if found is None:
        pytest.fail("mpiexec was not found; install the dev extras (`pip install -e '.[dev,mpich]'`).")
    return found


def run_script(
    script: str, *args: str, ranks: int | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/parallel/<script>`` as a plain script (``ranks=None``) or on ``ranks`` MPI ranks."""
    command = [sys.executable, "-m", "mpi4py", str(HERE / script), *args]
    if ranks is not None:
        command = [mpiexec(), "-n", str(ranks), *command]
    full_env = {**os.environ, "MPIEXEC_TIMEOUT": str(MPIEXEC_TIMEOUT), "HPCNE_QUIET": "1"}
    full_env.pop("HPCNE_BACKEND", None)
    full_env.update(env or {})
    return subprocess.run(
        command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env=full_env, cwd=HERE, check=False
    )


def json_lines(output: str) -> list[dict[str, Any]]:
    """The JSON objects a script printed, one per line."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def sum_problem(**kwargs: Any) -> Problem:
    """A cheap problem: fitness = sum of the values plus a draw from the solution's own generator."""

    def fitness(x: torch.Tensor) -> float:
        return float(x.double().sum()) + float(torch.rand(1, generator=problem.generator, dtype=torch.float64))

    problem = Problem("min", fitness, solution_length=5, seed=3, **kwargs)
    return problem


def population() -> torch.Tensor:
    """Eleven solutions of :func:`sum_problem` (an odd count, so that splits are uneven)."""
    return torch.linspace(-1, 1, 55).reshape(11, 5)
