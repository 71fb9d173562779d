"""Analysis of results files (``hpcne.analysis``): the functions of :mod:`hpcne.io.analysis`.

from hpcne.analysis import load_runs, plot_learning_curves, summarize
runs = load_runs(["runs/seed0", "runs/seed1"])   # one DataFrame, a ``run`` column per file
summarize(runs)                                  # one row per run
plot_learning_curves(runs, "curves.png")         # mean and 95% band over runs, aligned by length
"""

from hpcne.io.analysis import align_runs, load_runs, mean_interval, plot_learning_curves, read_results, summarize

__all__ = ["align_runs", "load_runs", "mean_interval", "plot_learning_curves", "read_results", "summarize"]
