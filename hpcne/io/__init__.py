"""HDF5 storage without pickle: state trees, atomic checkpoints, live results files and their analysis."""

from __future__ import annotations

from hpcne.io.analysis import load_runs, plot_learning_curves, read_results, summarize
from hpcne.io.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    CheckpointWarning,
)
from hpcne.io.results import RESULT_COLUMNS, RESULTS_FILENAME, ResultsWriter
from hpcne.io.tree import read_attrs, read_tree, tree_digest, write_attrs, write_tree

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
