"""What every measure shares: subprocess launches, Markdown tables, CSV files, load and machine notes.

This module imports neither torch nor hpcne, so that drivers stay light and the measuring
processes set their thread counts before torch is loaded.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ONE_THREAD",
    "ROOT",
    "LoadTracker",
    "machine_notes",
    "markdown_table",
    "median",
    "mpi_command",
    "run_json",
    "shown",
    "write_csv",
]

ROOT = Path(__file__).resolve().parent.parent
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HPCNE_QUIET": "1",
}


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (NaN when empty)."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


class LoadTracker:
    """Records the 1-minute load average whenever :meth:`sample` is called."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.sample()

    def sample(self) -> float:
        """Record and return the current 1-minute load average."""
        load = os.getloadavg()[0]
        self.samples.append(load)
        return load

    def describe(self) -> str:
        """``load average a–b on N CPUs`` over the samples so far."""
        low, high = min(self.samples), max(self.samples)
        return f"load average {low:.1f}–{high:.1f} on {os.cpu_count()} CPUs"


def mpiexec() -> str:
    """The ``mpiexec`` beside this interpreter (the ``mpich`` wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("No mpiexec found beside the interpreter or on PATH; install hpcne[mpich] or an MPI.")
    return found


def mpi_command(ranks: int | None, module: str, args: Sequence[str]) -> list[str]:
    """``python -m mpi4py -m module args``, under ``mpiexec -n ranks`` unless ``ranks`` is None."""
    command = [sys.executable, "-m", "mpi4py", "-m", module, *args]
    return command if ranks is None else [mpiexec(), "-n", str(ranks), *command]


def run_json(command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    """Run ``command`` from the repository root and return the last JSON line it printed.

    Raises:
        RuntimeError: If it fails, times out or prints no JSON line (with the end of its stderr).
    """
    full_env = {**os.environ, **ONE_THREAD, "MPIEXEC_TIMEOUT": str(int(timeout)), **(env or {})}
    full_env.pop("HPCNE_BACKEND", None)
    try:
        done = subprocess.run(
            list(command), cwd=ROOT, capture_output=True, text=True, env=full_env, timeout=timeout + 30, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{' '.join(command)} ran past {timeout:.0f} s.") from err
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one character per column, ``l`` or ``r`` (default: first left)."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def shown(path: Path) -> str:
    """``path`` relative to the repository root where it lies inside it (for tables)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` (dicts with the same keys) to ``path`` as CSV."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "unknown CPU").strip()
    family = f"family {fields.get('CPU family', '?').strip()} model {fields.get('Model', '?').strip()}"
    hypervisor = fields.get("Hypervisor vendor", "").strip()
    where = f", {hypervisor} VM" if hypervisor else ""
    threads = fields.get("Thread(s) per core", "?").strip()
    return f"{model} ({family}{where}), {os.cpu_count()} CPUs, {threads} thread(s) per core"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "not installed"


def machine_notes() -> str:
    """One paragraph: date, CPU (lscpu), memory, Python and library versions, MPI, load average."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        from mpi4py import MPI

        mpi = " ".join(MPI.Get_library_version().split()[:3])
    except Exception:
        mpi = "no MPI"
    versions = ", ".join(f"{m} {_version(m)}" for m in ("numpy", "torch", "gymnasium", "mujoco", "mpi4py"))
    return (
        f"{datetime.date.today().isoformat()}; {_lscpu_model()}, {memory:.0f} GiB; {platform.platform()}; "
        f"Python {platform.python_version()}, {versions}; {mpi}; load average {os.getloadavg()[0]:.1f}."
    )
