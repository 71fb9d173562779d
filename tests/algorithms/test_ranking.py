"""Fitness shaping: every ranking method pinned on a small vector, for both objective senses."""

from __future__ import annotations

import pytest
import torch

from hpcne.algorithms.ranking import RANKING_METHODS, best_first, rank

FITNESSES = [3.0, 1.0, 2.0]

# Utilities when higher fitness is better; NES: (max(0, ln 2.5 - ln k) / sum) - 1/3 for k = 1, 3, 2.
EXPECTED_MAX = {
    "centered": [0.5, -0.5, 0.0],
    "linear": [1.0, 0.0, 0.5],
    "nes": [0.4708295265993962, -1 / 3, -0.13749619326606277],
    "normalized": [1.0, -1.0, 0.0],
    "raw": [3.0, 1.0, 2.0],
}
EXPECTED_MIN = {
    "centered": [-0.5, 0.5, 0.0],
    "linear": [0.0, 1.0, 0.5],
    "nes": [-1 / 3, 0.4708295265993962, -0.13749619326606277],
    "normalized": [-1.0, 1.0, 0.0],
    "raw": [-3.0, -1.0, -2.0],
}


@pytest.mark.parametrize("method", RANKING_METHODS)
@pytest.mark.parametrize(("higher_is_better", "expected"), [(True, EXPECTED_MAX), (False, EXPECTED_MIN)])
def test_rank_methods(method: str, higher_is_better: bool, expected: dict[str, list[float]]) -> None:
    utilities = rank(torch.tensor(FITNESSES, dtype=torch.float64), method, higher_is_better=higher_is_better)
    torch.testing.assert_close(utilities, torch.tensor(expected[method], dtype=torch.float64))


def test_nes_utilities_sum_to_zero() -> None:
    utilities = rank(torch.randn(17, generator=torch.Generator().manual_seed(0)), "nes")
    assert abs(float(utilities.sum())) < 1e-6


def test_none_means_raw_and_lists_are_accepted() -> None:
    assert rank(FITNESSES, None, higher_is_better=False).tolist() == [-3.0, -1.0, -2.0]


def test_ties_favour_the_earlier_solution() -> None:
    assert rank(torch.tensor([1.0, 1.0, 0.0]), "linear").tolist() == [1.0, 0.5, 0.0]
    assert best_first(torch.tensor([1.0, 1.0, 0.0]), higher_is_better=False).tolist() == [2, 0, 1]


def test_unknown_method_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"Unknown ranking method 'ranked'.*centered, linear, nes, normalized, raw"):
        rank(FITNESSES, "ranked")


@pytest.mark.parametrize("method", RANKING_METHODS)
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_nan_is_never_ranked_above_a_number(method: str, higher_is_better: bool) -> None:
    """A NaN fitness (a NaN reward) once got the top utility; it must get the lowest, and no NaN utility."""
    fitnesses = torch.tensor([10.0, float("nan"), 30.0, 20.0, float("nan")], dtype=torch.float64)
    utilities = rank(fitnesses, method, higher_is_better=higher_is_better)
    assert not torch.isnan(utilities).any()
    numbers = utilities[[0, 2, 3]]
    assert float(utilities[1]) <= float(numbers.min()) and float(utilities[4]) <= float(numbers.min())
    finite_order = rank(fitnesses[[0, 2, 3]], method, higher_is_better=higher_is_better).argsort()
    assert numbers.argsort().tolist() == finite_order.tolist()  # the numbers keep their own order


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_best_first_puts_nan_last_in_a_stable_order(higher_is_better: bool) -> None:
    fitnesses = torch.tensor([float("nan"), 1.0, float("nan"), 2.0])
    expected = [3, 1, 0, 2] if higher_is_better else [1, 3, 0, 2]
    assert best_first(fitnesses, higher_is_better=higher_is_better).tolist() == expected
