"""EvoTorch's ``core`` module path: problems, solutions and evaluation results.

The code lives in :mod:`hpcne.problem` (:class:`Problem`) and :mod:`hpcne.solution`
(:class:`Solution`, :class:`SolutionBatch`, :class:`EvalResult`); this module gathers them where
EvoTorch users look for them (``evotorch.core``).
"""

from hpcne.problem import STREAM_EVALUATION, STREAM_PROBLEM, STREAM_SEARCHER, ObjectiveSense, Problem
from hpcne.solution import EvalResult, Solution, SolutionBatch, annotate_solution

__all__ = [
    "STREAM_EVALUATION",
    "STREAM_PROBLEM",
    "STREAM_SEARCHER",
    "EvalResult",
    "ObjectiveSense",
    "Problem",
    "Solution",
    "SolutionBatch",
    "annotate_solution",
]
