"""GA operators (hpcne.operators): what each makes from known parents, bounds, dtypes and errors."""

from __future__ import annotations

import pytest
import torch

from hpcne.core import Problem, SolutionBatch
from hpcne.operators import (
    CosynePermutation,
    GaussianMutation,
    MultiPointCrossOver,
    OnePointCrossOver,
    PolynomialMutation,
    SimulatedBinaryCrossOver,
    TwoPointCrossOver,
    apply_operators,
)


def make(dtype: str = "float32", d: int = 12, **options: object) -> Problem:
    options.setdefault("initial_bounds", (-1, 1))
    return Problem(
        "max", lambda x: x.double().sum(-1), solution_length=d, dtype=dtype, vectorized=True, seed=0, **options
    )


def switches(row: torch.Tensor) -> int:
    """How often a 0/1 row changes value: the number of cuts a cross-over made."""
    return int((row[1:] != row[:-1]).sum())


def test_gaussian_mutation_copies_clips_and_respects_the_probability() -> None:
    problem = make(bounds=(-1.5, 1.5))
    batch = problem.generate_batch(200)
    before = batch.values.clone()
    mutated = GaussianMutation(problem, stdev=1.0)(batch)
    assert torch.equal(batch.values, before) and not mutated.is_evaluated
    assert mutated.values.abs().max() <= 1.5 and (mutated.values != before).float().mean() > 0.95
    sparse = GaussianMutation(problem, stdev=1.0, mutation_probability=0.1)(batch)
    assert 0.05 < (sparse.values != before).float().mean() < 0.15
    with pytest.raises(ValueError, match="floating-point"):
        GaussianMutation(make("int64"), stdev=1.0)
    with pytest.raises(ValueError, match="stdev must be positive"):
        GaussianMutation(problem, stdev=0)


def test_polynomial_mutation_stays_in_bounds_and_needs_them() -> None:
    problem = make(bounds=(-2.0, 3.0))
    batch = problem.generate_batch(100)
    mutated = PolynomialMutation(problem, eta=5)(batch)
    assert mutated.values.min() >= -2.0 and mutated.values.max() <= 3.0
    assert (mutated.values != batch.values).all()
    with pytest.raises(ValueError, match="needs a problem with hard bounds"):
        PolynomialMutation(make())


@pytest.mark.parametrize(("operator", "cuts"), [(OnePointCrossOver, 1), (TwoPointCrossOver, 2)])
def test_point_cross_overs_cut_known_parents(operator: type, cuts: int) -> None:
    problem = make("int64", d=20)
    zeros, ones = torch.zeros(50, 20, dtype=torch.int64), torch.ones(50, 20, dtype=torch.int64)
    children = operator(problem, tournament_size=2)._do_cross_over(zeros, ones).values
    assert children.dtype == torch.int64 and children.shape == (100, 20)
    assert torch.equal(children[:50] + children[50:], torch.ones(50, 20, dtype=torch.int64))  # complementary
    counts = [switches(row) for row in children[:50]]
    assert max(counts) <= cuts and (cuts == 2 or min(counts) == 1)  # one point: always a real cut


def test_multi_point_cross_over_and_its_checks() -> None:
    problem = make("bool", d=30, initial_bounds=(False, True))
    zeros, ones = torch.zeros(40, 30, dtype=torch.bool), torch.ones(40, 30, dtype=torch.bool)
    children = MultiPointCrossOver(problem, tournament_size=2, num_points=4)._do_cross_over(zeros, ones).values
    assert children.dtype == torch.bool and max(switches(row) for row in children) <= 4
    with pytest.raises(ValueError, match="num_points must be an int >= 1"):
        MultiPointCrossOver(problem, tournament_size=2, num_points=0)
    with pytest.raises(ValueError, match="positive even number"):
        OnePointCrossOver(problem, tournament_size=2, num_children=3)
    with pytest.raises(ValueError, match="not both"):
        OnePointCrossOver(problem, tournament_size=2, num_children=4, cross_over_rate=1.0)


def test_sbx_children_keep_the_parents_mean() -> None:
    problem = make()
    p1, p2 = torch.randn(30, 12), torch.randn(30, 12)
    children = SimulatedBinaryCrossOver(problem, tournament_size=2, eta=10)._do_cross_over(p1, p2).values
    torch.testing.assert_close(children[:30] + children[30:], p1 + p2)


@pytest.mark.parametrize(("options", "expected"), [({}, 10), ({"cross_over_rate": 2.0}, 20), ({"num_children": 4}, 4)])
def test_tournaments_pick_good_parents_and_size_the_children(options: dict, expected: int) -> None:
    problem = make()
    batch = problem.generate_batch(10)
    problem.evaluate(batch)
    best = batch.values[batch.argbest()]
    cross = OnePointCrossOver(problem, tournament_size=400, **options)  # misses the best with p = 0.9**400
    p1, p2 = cross._select_parents(batch)
    assert len(p1) == len(p2) == expected // 2
    assert (torch.cat([p1, p2]) == best).all()
    assert len(cross(batch)) == expected


def test_cosyne_permutation_permutes_each_gene_among_solutions() -> None:
    problem = make()
    batch = problem.generate_batch(16)
    problem.evaluate(batch)
    for permute_all in (False, True):
        permuted = CosynePermutation(problem, permute_all=permute_all)(batch).values
        torch.testing.assert_close(permuted.sort(dim=0).values, batch.values.sort(dim=0).values)
    assert (permuted != batch.values).float().mean() > 0.5
    best = batch.argbest()
    kept = torch.stack([CosynePermutation(problem)(batch).values[best] == batch.values[best] for _ in range(20)])
    assert kept.float().mean() > 0.9  # the best solution is rarely disturbed


def test_function_operators_and_errors() -> None:
    problem = make()
    batch = problem.generate_batch(4)
    doubled = apply_operators(batch, [lambda v: v * 2, lambda v: v + 1])
    torch.testing.assert_close(doubled.values, batch.values * 2 + 1)
    with pytest.raises(ValueError, match="must return the shape it was given"):
        apply_operators(batch, [lambda v: v[:2]])
    with pytest.raises(TypeError, match="an hpcne Operator or a function"):
        apply_operators(batch, [42])
    assert isinstance(doubled, SolutionBatch) and not doubled.is_evaluated


def test_fixed_point_cross_overs_refuse_another_number_of_points() -> None:
    with pytest.raises(ValueError, match="OnePointCrossOver cuts at 1 point"):
        OnePointCrossOver(make(), tournament_size=2, num_points=3)
    assert TwoPointCrossOver(make(), tournament_size=2).num_points == 2
