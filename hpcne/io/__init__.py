"""HDF5 storage without pickle: state trees, atomic checkpoints, live results files and their analysis."""

from __future__ import annotations

import importlib
from typing import Any

from hpcne.io.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    CheckpointWarning,
)
from hpcne.io.results import RESULT_COLUMNS, RESULTS_FILENAME, ResultsWriter
from hpcne.io.tree import read_attrs, read_tree, tree_digest, write_attrs, write_tree

# The analysis functions load pandas and matplotlib (about a second) on first use (PEP 562), so
# that a training process, a pool worker or an MPI rank that only writes files does not import them.
_ANALYSIS = ("load_runs", "plot_learning_curves", "read_results", "summarize")


def __getattr__(name: str) -> Any:
    if name in _ANALYSIS:
        return getattr(importlib.import_module("hpcne.io.analysis"), name)
    raise AttributeError(f"module 'hpcne.io' has no attribute {name!r}")


__all__ = [
    "FORMAT_VERSION",
    "RESULTS_FILENAME",
    "RESULT_COLUMNS",
    "Checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWarning",
    "ResultsWriter",
    "load_runs",
    "plot_learning_curves",
    "read_attrs",
    "read_results",
    "read_tree",
    "summarize",
    "tree_digest",
    "write_attrs",
    "write_tree",
]
