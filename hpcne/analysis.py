"""Analysis of results files (``hpcne.analysis``): the functions of :mod:`hpcne.io.analysis`.

from hpcne.analysis import load_runs, plot_learning_curves, summarize
runs = load_runs(["runs/seed0", "runs/seed1"])   # one DataFrame, a ``run`` column per file
summarize(runs)                                  # one row per run
plot_learning_curves(runs, "curves.png")         # mean and spread over runs
"""

from hpcne.io.analysis import load_runs, plot_learning_curves, read_results, summarize

__all__ = ["load_runs", "plot_learning_curves", "read_results", "summarize"]
