"""hpcne.core: Problem, SolutionBatch, Solution and EvalResult."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hpcne.core import EvalResult, Problem, SolutionBatch


def sphere(x: torch.Tensor) -> float:
    return float((x**2).sum())


def make(sense: str = "min", **kwargs) -> Problem:
    options = {"solution_length": 3, "num_actors": None, "seed": 0, "initial_bounds": (-1.0, 1.0), **kwargs}
    return Problem(sense, sphere, **options)


def test_evaluate_with_an_objective_function() -> None:
    problem = make()
    batch = SolutionBatch(problem, values=torch.tensor([[1.0, 2, 2], [0, 0, 1], [3, 0, 0]]))
    assert not batch.is_evaluated
    problem.evaluate(batch)
    assert batch.is_evaluated
    assert batch.evals[:, 0].tolist() == [9.0, 1.0, 9.0]
    assert batch.evals.dtype == torch.float64
    assert (batch.argbest(), batch.argworst()) == (1, 0)
    assert batch[1].evaluation == 1.0 and batch[-1].evaluation == 9.0


def test_vectorized_objective_and_batch_override() -> None:
    problem = Problem("max", lambda xs: xs.sum(dim=1), solution_length=2, vectorized=True, num_actors=None)
    batch = SolutionBatch(problem, values=torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    problem.evaluate(batch)
    assert batch.evals[:, 0].tolist() == [3.0, 7.0]

    class Batched(Problem):
        def _evaluate_batch(self, batch: SolutionBatch) -> None:
            batch.set_evals(batch.values[:, 0] * 10)

    batch = SolutionBatch(Batched("min", solution_length=2, num_actors=None), values=torch.ones(3, 2))
    batch.problem.evaluate(batch)
    assert batch.evals[:, 0].tolist() == [10.0, 10.0, 10.0]


def test_argbest_respects_the_sense_and_ignores_nan() -> None:
    values = torch.tensor([3.0, math.nan, -1.0, 5.0])
    assert int(make("max").argbest(values)) == 3
    assert int(make("min").argbest(values)) == 2
    assert int(make("max").argworst(values)) == 2
    problem = make("min")
    assert problem.is_better(1.0, 2.0) and not problem.is_better(2.0, 1.0)
    assert problem.is_better(5.0, math.nan) and not problem.is_better(math.nan, 5.0)
    assert (make("max").sense_sign, problem.sense_sign) == (1.0, -1.0)


def test_missing_fitness_and_errors_name_the_solution() -> None:
    class Forgetful(Problem):
        def _evaluate(self, solution) -> None:
            if solution.values[0] > 0:
                solution.set_evaluation(1.0)

    problem = Forgetful("max", solution_length=1, num_actors=None)
    batch = SolutionBatch(problem, values=torch.tensor([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match="Solution 1 was given no fitness"):
        problem.evaluate(batch)

    def failing(x: torch.Tensor) -> float:
        if x[0] < 0:
            raise RuntimeError("negative")
        return 0.0

    problem = Problem("max", failing, solution_length=1, num_actors=None)
    with pytest.raises(RuntimeError, match="negative") as info:
        problem.evaluate(SolutionBatch(problem, values=torch.tensor([[1.0], [2.0], [-3.0]])))
    assert info.value.hpcne_solution_index == 2
    bare = Problem("max", solution_length=1, num_actors=None, initial_bounds=(-1, 1))
    with pytest.raises(NotImplementedError, match="objective_func"):
        bare.evaluate(bare.generate_batch(1))


def test_solution_batch_values_and_evals() -> None:
    problem = make()
    batch = problem.generate_batch(4)
    assert len(batch) == 4 and batch.solution_length == 3
    problem.evaluate(batch)
    kept = batch.take([2, 0])
    assert torch.equal(kept.values, batch.values[[2, 0]]) and torch.equal(kept.evals, batch.evals[[2, 0]])
    kept.values[0] += 1  # a copy
    assert not torch.equal(kept.values[0], batch.values[2])
    both = SolutionBatch.cat([batch, kept])
    assert len(both) == 6 and torch.equal(both.evals[:4], batch.evals)
    batch[1].set_values([0.0, 0.0, 0.0])
    assert math.isnan(batch[1].evaluation) and not batch[1].is_evaluated and batch[0].is_evaluated
    batch.access_values(keep_evals=True)
    assert not math.isnan(batch[0].evaluation)
    batch.access_values()
    assert torch.isnan(batch.evals).all()
    batch.set_evals(np.arange(4.0))
    assert batch.evals[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    batch.set_values(torch.zeros(4, 3))
    assert not batch.is_evaluated
    assert [s.evaluation for s in SolutionBatch(problem, values=torch.ones(2, 3), evals=[1.0, 2.0])] == [1.0, 2.0]


def test_solution_batch_errors() -> None:
    problem = make()
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        SolutionBatch(problem, values=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="popsize or values"):
        SolutionBatch(problem)
    with pytest.raises(IndexError, match="out of range for a batch of 2"):
        problem.generate_batch(2)[2]
    with pytest.raises(ValueError, match="at least one batch"):
        SolutionBatch.cat([])


def test_bounds() -> None:
    problem = make(initial_bounds=([-1.0, 0.0, 5.0], [1.0, 0.5, 6.0]), bounds=(-10, 10))
    values = problem.generate_batch(200).values
    assert (values.min(0).values >= torch.tensor([-1.0, 0.0, 5.0])).all()
    assert (values.max(0).values <= torch.tensor([1.0, 0.5, 6.0])).all()
    assert problem.lower_bounds.tolist() == [-10.0] * 3 and problem.upper_bounds.tolist() == [10.0] * 3
    assert make().lower_bounds is None
    assert make().generate_batch(50).values.abs().max() <= 1.0
    assert make(initial_bounds=None, bounds=(2.0, 3.0)).generate_batch(10).values.min() >= 2.0  # bounds suffice
    with pytest.raises(RuntimeError, match="no initial_bounds"):  # as EvoTorch: no bounds, no new solutions
        make(initial_bounds=None).generate_batch(1)
    with pytest.raises(ValueError, match="lower bound must be <="):
        make(initial_bounds=(1.0, -1.0)).generate_batch(1)
    with pytest.raises(ValueError, match="must be a pair"):
        make(initial_bounds=5.0).generate_batch(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"solution_length": 0}, "solution_length"),
        ({"solution_length": None}, "solution_length must be given"),
        ({"num_subbatches": 2, "subbatch_size": 2}, "cannot both be set"),
        ({"num_actors": -1}, "num_actors"),
        ({"num_actors": "all of them"}, "num_actors"),
        ({"num_gpus_per_actor": "some"}, "num_gpus_per_actor"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_problem_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kwargs)
    with pytest.raises(TypeError, match="objective_func must be callable"):
        Problem("min", 3, solution_length=2)


def test_make_gaussian_and_uniform() -> None:
    problem = make()
    z = problem.make_gaussian(1000, 2, center=5.0, stdev=0.1)
    assert z.shape == (1000, 2) and abs(float(z.mean()) - 5.0) < 0.02 and abs(float(z.std()) - 0.1) < 0.01
    pairs = problem.make_gaussian((4, 3), symmetric=True)
    assert torch.equal(pairs[0], -pairs[1]) and torch.equal(pairs[2], -pairs[3])
    with pytest.raises(ValueError, match="even number of rows"):
        problem.make_gaussian(3, 2, symmetric=True)
    u = problem.make_uniform(500, lb=-2.0, ub=-1.0)
    assert u.min() >= -2.0 and u.max() < -1.0
    out = torch.zeros(200, dtype=torch.float64)
    assert problem.make_gaussian(out=out) is out and len(set(out.tolist())) == 200  # fills out, value by value
    assert problem.make_uniform(out=torch.zeros(2, 2), lb=3.0, ub=4.0).min() >= 3.0
    assert problem.make_gaussian(num_solutions=5).shape == (5, 3)
    assert problem.make_uniform(num_solutions=2).shape == (2, 3)
    with pytest.raises(ValueError, match="a size, num_solutions=n, or out=tensor"):
        problem.make_gaussian()
    with pytest.raises(ValueError, match="not both"):
        problem.make_uniform(2, num_solutions=2)
    assert problem.make_zeros(num_solutions=2).tolist() == [[0.0] * 3] * 2
    assert problem.make_ones(2).tolist() == [1.0, 1.0]
    assert problem.make_tensor([1, 2]).dtype == torch.float32


def test_seeded_problems_draw_the_same_numbers_and_state_dict_continues_them() -> None:
    a, b = make(seed=7), make(seed=7)
    assert torch.equal(a.generate_batch(5).values, b.generate_batch(5).values)
    assert not torch.equal(make(seed=8).generate_batch(5).values, make(seed=7).generate_batch(5).values)
    assert 0 <= Problem("min", sphere, solution_length=1).seed < 2**63  # drawn and recorded
    state = a.state_dict()
    expected = a.generate_batch(3).values
    fresh = make(seed=0)
    fresh.load_state_dict(state)
    assert fresh.seed == 7 and torch.equal(fresh.generate_batch(3).values, expected)
    with pytest.raises(ValueError, match="has 3 parameters but this one has 2"):
        make(solution_length=2).load_state_dict(state)


def test_per_solution_generator_depends_on_round_and_index_only() -> None:
    class Noisy(Problem):
        def _evaluate(self, solution) -> None:
            solution.set_evaluation(float(self.make_gaussian(1)))

    problem = Noisy("max", solution_length=1, num_actors=None, seed=1)
    first = problem.evaluate_values(np.zeros((3, 1), np.float32))
    second = problem.evaluate_values(np.ones((3, 1), np.float32))
    assert len(set(first)) == 3 and not set(first) & set(second)  # per index, per round
    replay = Noisy("max", solution_length=1, num_actors=None, seed=1)
    assert replay.evaluate_values(np.full((2, 1), 9.0, np.float32)).tolist() == first[:2].tolist()


def test_eval_result_merge() -> None:
    a = EvalResult(np.array([1.0, 2.0]), episodes=2, interactions=10, obs_delta=np.array([1.0, 2.0, 3.0]))
    b = EvalResult(np.array([3.0]), episodes=1, interactions=5)
    c = EvalResult(np.array([4.0]), episodes=1, interactions=1, obs_delta=np.array([1.0, 1.0, 1.0]))
    merged = EvalResult.merge([a, b, c])
    assert merged.fitness.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (merged.episodes, merged.interactions) == (4, 16)
    assert merged.obs_delta.tolist() == [2.0, 3.0, 4.0]
    assert EvalResult.merge([b]).obs_delta is None and len(EvalResult.merge([]).fitness) == 0


def test_empty_batch_is_a_no_op() -> None:
    problem = make()
    problem.evaluate(SolutionBatch(problem, values=torch.zeros(0, 3)))
    assert problem.state_dict()["eval_round"] == 0
