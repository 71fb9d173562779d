"""Create the separate virtual environment in which the EvoTorch side of the comparisons runs.

EvoTorch is never a dependency of hpcne: it lives in ``.bench/evotorch-venv`` (gitignored),
made with the interpreter that runs the benchmark. torch is installed first, on its own, so that
pip takes the CPU wheel (a local wheel from ``PIP_FIND_LINKS`` where there is one) instead of
pulling the CUDA build with EvoTorch's dependencies.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["DEFAULT_VENV", "EVOTORCH_SPEC", "TORCH_SPEC", "ensure_evotorch_venv", "venv_python"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".bench" / "evotorch-venv"
TORCH_SPEC = "torch==2.13.0"
EVOTORCH_SPEC = "evotorch==0.6.1"
OTHERS = ("ray", "gymnasium[mujoco]")


def venv_python(path: Path) -> Path:
    """The interpreter of the virtual environment at ``path``."""
    return path / "bin" / "python"


def _installed(python: Path) -> bool:
    check = "import evotorch, ray, torch, gymnasium, mujoco; print(evotorch.__version__)"
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True, check=False)
    return done.returncode == 0


def ensure_evotorch_venv(path: Path = DEFAULT_VENV, *, torch_spec: str = TORCH_SPEC) -> Path:
    """Create the venv at ``path`` and install torch, then EvoTorch, Ray and MuJoCo (once); return its python."""
    python = venv_python(path)
    if python.exists() and _installed(python):
        return python
    print(f"Creating the EvoTorch environment in {path} (a few minutes, once) ...", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=not python.exists()).create(path)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    for step in ([torch_spec], [EVOTORCH_SPEC, *OTHERS, torch_spec]):
        subprocess.run([*pip, *step], check=True)
    if not _installed(python):
        raise RuntimeError(f"The EvoTorch environment in {path} was installed but cannot import evotorch and ray.")
    return python


if __name__ == "__main__":
    print(ensure_evotorch_venv())
