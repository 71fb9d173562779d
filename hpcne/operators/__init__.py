"""Variation operators for genetic algorithms (EvoTorch's ``evotorch.operators``)."""

from __future__ import annotations

from hpcne.operators.base import CopyingOperator, CrossOver, Operator, OperatorLike, apply_operators
from hpcne.operators.real import (
    CosynePermutation,
    GaussianMutation,
    MultiPointCrossOver,
    OnePointCrossOver,
    PolynomialMutation,
    SimulatedBinaryCrossOver,
    TwoPointCrossOver,
)

__all__ = [
    "CopyingOperator",
    "CosynePermutation",
    "CrossOver",
    "GaussianMutation",
    "MultiPointCrossOver",
    "OnePointCrossOver",
    "Operator",
    "OperatorLike",
    "PolynomialMutation",
    "SimulatedBinaryCrossOver",
    "TwoPointCrossOver",
    "apply_operators",
]
