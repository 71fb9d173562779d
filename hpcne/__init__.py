"""hpcne: EvoTorch-style neuroevolution scaled with MPI and local process pools."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
