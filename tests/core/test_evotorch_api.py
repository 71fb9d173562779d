"""EvoTorch's Problem and SolutionBatch API in hpcne: top-level names, dtypes, eval data, hooks, views, copies."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
import torch

import hpcne
from hpcne import Problem, Solution, SolutionBatch
from hpcne.tools import DType, Hook, clone, deep_clone, make_uniform, storage_ptr, to_numpy_dtype, to_torch_dtype
from hpcne.tools.objectarray import ObjectArray


def total(x: torch.Tensor) -> torch.Tensor:
    return x.double().sum(-1)


def make(**options: Any) -> Problem:
    options = {"solution_length": 5, "initial_bounds": (-1.0, 1.0), "num_actors": None, "seed": 0, **options}
    return Problem("min", total, vectorized=True, **options)


def test_top_level_names() -> None:
    assert (hpcne.Problem, hpcne.Solution, hpcne.SolutionBatch) == (Problem, Solution, SolutionBatch)
    for name in ("algorithms", "logging", "neuroevolution", "optimizers", "tools"):
        assert getattr(hpcne, name).__name__ == f"hpcne.{name}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("float32", torch.float32), (np.float64, torch.float64), (torch.int16, torch.int16), ("bool", torch.bool)],
)
def test_dtypes_by_name_numpy_or_torch(given: DType, expected: torch.dtype) -> None:
    assert to_torch_dtype(given) == expected
    assert to_numpy_dtype(expected) == np.dtype(str(expected).removeprefix("torch."))
    assert make(dtype=given, eval_dtype="float32").dtype == expected
    with pytest.raises(ValueError, match="numeric dtype"):
        make(dtype=object)


def test_integer_and_boolean_solutions_fill_their_bounds() -> None:
    ints = make(dtype="int64", initial_bounds=(-2, 3)).generate_values(400)
    assert ints.dtype == torch.int64 and set(ints.unique().tolist()) == {-2, -1, 0, 1, 2, 3}
    flags = make(dtype=torch.bool, initial_bounds=(False, True)).generate_values(200)
    assert flags.dtype == torch.bool and 0.3 < flags.float().mean() < 0.7


def test_make_randint() -> None:
    problem = make()
    draws = problem.make_randint(500, n=4)
    assert draws.dtype == torch.int64 and set(draws.unique().tolist()) == {0, 1, 2, 3}
    assert problem.make_randint(num_solutions=2, n=3, dtype=torch.int8).shape == (2, 5)


def test_no_bounds_raises_and_fill_can_be_overridden() -> None:
    with pytest.raises(RuntimeError, match="no initial_bounds"):
        make(initial_bounds=None).generate_batch(2)

    class Zeros(Problem):
        def _fill(self, values: torch.Tensor) -> None:
            values.fill_(7)

    assert Zeros("max", total, solution_length=3, dtype="int32").generate_batch(2).values.tolist() == [[7] * 3] * 2


def test_checks_and_senses() -> None:
    bounded, free = make(bounds=(-3, 3)), make()
    bounded.ensure_numeric()
    bounded.ensure_single_objective()
    with pytest.raises(ValueError, match="does not respect hard bounds"):
        bounded.ensure_unbounded()
    free.ensure_unbounded()
    assert free.senses == ["min"] and not free.is_multi_objective
    assert Problem(["max"], total, solution_length=2).objective_sense == "max"
    with pytest.raises(ValueError, match="single objective"):
        Problem(["min", "max"], total, solution_length=2)


def test_eval_data_and_set_evals_shapes() -> None:
    problem = make(eval_data_length=2)
    batch = problem.generate_batch(3)
    assert batch.values_shape == (3, 5) and batch.eval_shape == (3, 3)
    batch.set_evals(torch.tensor([1.0, 2.0, 3.0]))
    assert batch.access_evals(0).tolist() == [1.0, 2.0, 3.0] and torch.isnan(batch.evals[:, 1:]).all()
    batch.set_evals(torch.ones(3), torch.full((3, 2), 5.0))
    assert batch.evals.tolist() == [[1.0, 5.0, 5.0]] * 3
    batch.set_evals(torch.zeros(3, 3))
    assert batch.evals.abs().sum() == 0
    with pytest.raises(ValueError, match=r"\(3, 3\) \(1 fitness \+ 2 eval data columns\); got \(3, 2\)"):
        batch.set_evals(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"eval_data must have shape \(3, 2\)"):
        batch.set_evals(torch.zeros(3), torch.zeros(3, 1))


class WithData(Problem):
    """Fitness: the sum; eval data: the first value (module level: pool workers import it)."""

    def _evaluate_batch(self, batch: SolutionBatch) -> None:
        batch.set_evals(total(batch.values), batch.values[:, :1])


def test_eval_data_comes_back_from_in_process_evaluation_and_is_never_lost() -> None:
    problem = WithData("min", solution_length=2, initial_bounds=(0, 1), eval_data_length=1, num_actors=None)
    batch = problem.generate_batch(4)
    problem.evaluate(batch)
    torch.testing.assert_close(batch.evals[:, 1], batch.values[:, 0].double())
    pooled = WithData("min", solution_length=2, initial_bounds=(0, 1), eval_data_length=1, num_actors=2)
    try:
        with pytest.raises(RuntimeError, match="eval_data_length=1 needs evaluation in this process"):
            pooled.evaluate(pooled.generate_batch(4))
    finally:
        pooled.kill_actors()


def test_hooks_and_solution_stats() -> None:
    problem = make(store_solution_stats=True)
    seen: list[int] = []
    problem.before_eval_hook.append(lambda batch: seen.append(len(batch)))
    problem.after_eval_hook.append(lambda batch: {"last_size": len(batch)})
    first = SolutionBatch(problem, values=torch.tensor([[1.0] * 5, [-1.0] * 5]))
    problem.evaluate(first)
    problem.evaluate(SolutionBatch(problem, values=torch.tensor([[0.5] * 5])))
    assert seen == [2, 1] and problem.status["last_size"] == 1
    assert problem.status["best_eval"] == -5.0 and problem.status["worst_eval"] == 5.0
    assert isinstance(problem.status["best"], Solution)


def test_slices_are_views_and_index_lists_copies() -> None:
    problem = make()
    batch = problem.generate_batch(6)
    problem.evaluate(batch)
    view = batch[3:]
    view.access_values()[:] = 2.0
    assert (batch.values[3:] == 2.0).all() and torch.isnan(batch.evals[3:, 0]).all()
    assert not torch.isnan(batch.evals[:3, 0]).any()
    chosen = batch[[0, 2]]
    chosen.access_values()[:] = -9.0
    assert (batch.values[[0, 2]] != -9.0).all()
    assert storage_ptr(view.values) == storage_ptr(batch.values) != storage_ptr(chosen.values)


@pytest.mark.parametrize("copier", [lambda b: b.clone(), copy.copy, copy.deepcopy, clone, deep_clone])
def test_copies_are_independent(copier: Any) -> None:
    batch = make().generate_batch(3)
    copied = copier(batch)
    copied.access_values()[:] = 0.0
    assert (batch.values != 0).all()
    solution = batch[1]
    solution_copy = copier(solution)
    solution_copy.access_values()[:] = 5.0
    assert (batch.values[1] != 5.0).all() and (solution_copy.values == 5.0).all()


def test_solution_api_and_empty_batches() -> None:
    problem = make()
    batch = SolutionBatch(problem, popsize=3, empty=True)
    batch.access_values()[:] = torch.arange(15.0).reshape(3, 5)
    problem.evaluate(batch)
    solution = batch[-1]
    assert len(solution) == 5 and solution.shape == (5,) and solution.evaluation == 60.0
    assert np.asarray(solution).tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    solution.access_values()[0] = 0.0
    assert not solution.is_evaluated and batch[0].is_evaluated
    both = SolutionBatch.cat([batch[:1], batch[1]])
    assert len(both) == 2 and both.values[1].tolist() == batch.values[1].tolist()
    utility = batch.utility()  # raw fitness, negated for minimisation; NaN where not evaluated
    assert utility[:2].tolist() == [-10.0, -35.0] and torch.isnan(utility[2])
    problem.evaluate(batch)
    assert batch.utils(ranking_method="centered").squeeze(1).tolist() == [0.5, 0.0, -0.5]
    assert batch.argsort().tolist() == [0, 1, 2]
    with pytest.raises(IndexError, match="out of range for a batch of 3"):
        batch[3]
    assert batch[torch.tensor(1)].evaluation == batch[np.int64(1)].evaluation == batch[1].evaluation
    pickle.loads(pickle.dumps(batch.values))  # plain tensors: users may pickle their own data


def test_tools_hook_make_uniform_and_object_array() -> None:
    hook = Hook([lambda a, *, k: [a, k], lambda a, *, k: [a * 2]], kwargs={"k": "x"})
    assert hook(1) == [1, "x", 2]
    assert Hook([lambda: None])() is None
    with pytest.raises(TypeError, match="must all be dicts or all lists"):
        Hook([lambda: {"a": 1}, lambda: [2]])()
    ints = make_uniform(1000, lb=-2, ub=2, dtype="int64")
    assert set(ints.unique().tolist()) == {-2, -1, 0, 1, 2}
    assert make_uniform((2, 3), lb=5.0, ub=6.0).shape == (2, 3)
    objects = ObjectArray(3)
    objects[1] = "two"
    copied = objects.clone()
    assert list(copied) == [None, "two", None] and copied.shape == (3,) and copied.dtype == np.dtype(object)


def test_testing_helpers() -> None:
    from hpcne.testing import TestingError, assert_allclose, assert_almost_between, assert_dtype_matches

    assert_allclose([1.0, 2.0], torch.tensor([1.0, 2.0 + 1e-7]), atol=1e-6)
    with pytest.raises(AssertionError):
        assert_allclose([1.0], [1.1], rtol=1e-3)
    with pytest.raises(TestingError, match="needs a tolerance"):
        assert_allclose([1.0], [1.0])
    assert_almost_between(torch.tensor([0.0, 1.0]), 0.0, 1.0)
    assert_dtype_matches(torch.zeros(1, dtype=torch.int64), "int64")
    with pytest.raises(AssertionError, match="dtype mismatch"):
        assert_dtype_matches(np.zeros(1), torch.float32)


def test_the_evotorch_test_runner_renames_imports_only() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "evotorch_tests.py"
    spec = importlib.util.spec_from_file_location("evotorch_tests", path)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)  # type: ignore[union-attr]
    source = ["import evotorch", "import evotorch as et", "from evotorch.tools import x", "    from evotorch import y"]
    renamed = ["import hpcne as evotorch", "import hpcne as et", "from hpcne.tools import x", "    from hpcne import y"]
    text = 's = "evotorch"'  # not an import: unchanged
    assert runner.rename_imports("\n".join([*source, text])) == "\n".join([*renamed, text])
