"""Fitness ranking at EvoTorch's module path (``evotorch.tools.ranking``); the code is in hpcne.algorithms.ranking."""

from hpcne.algorithms.ranking import RANKING_METHODS, rank

__all__ = ["RANKING_METHODS", "rank"]
