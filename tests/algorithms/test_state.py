"""State dicts: k steps, save, restore into fresh objects, m more steps equals k + m uninterrupted."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from hpcne.algorithms import ALGORITHMS, SearchAlgorithm

STATUS_EVALS = ("iter", "popsize", "mean_eval", "median_eval", "pop_best_eval", "worst_eval", "best_eval")


def assert_plain(value: Any, where: str = "state") -> None:
    """Check that ``value`` holds only tensors, arrays, plain scalars and nested dicts."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where} has a non-string key {key!r}"
            assert_plain(item, f"{where}[{key!r}]")
    else:
        assert value is None or isinstance(value, (torch.Tensor, np.ndarray, int, float, bool, str)), (
            f"{where} holds a {type(value).__name__}"
        )


def assert_same(a: Any, b: Any) -> None:
    """Check that two nested states are equal, tensors bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_resume_continues_bit_for_bit(name: str, make_searcher: Callable[..., SearchAlgorithm]) -> None:
    k, m = 3, 4
    reference = make_searcher(name)
    reference.run(k + m)

    first = make_searcher(name)
    first.run(k)
    saved = copy.deepcopy(first.state_dict())
    assert_plain(saved)
    resumed = make_searcher(name)
    resumed.load_state_dict(saved)
    assert resumed.status["iter"] == k
    assert resumed.status["best_eval"] == first.status["best_eval"]
    resumed.run(m)

    assert torch.equal(resumed.population.values, reference.population.values)
    assert torch.equal(resumed.population.evals, reference.population.evals)
    assert torch.equal(resumed.status["best"].values, reference.status["best"].values)
    if "center" in reference.status:
        assert torch.equal(resumed.status["center"], reference.status["center"])
        assert torch.equal(resumed.status["stdev"], reference.status["stdev"])
    for key in STATUS_EVALS:
        assert resumed.status[key] == reference.status[key], key
    assert_same(resumed.state_dict(), reference.state_dict())


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_state_dict_does_not_alias_the_searcher(name: str, make_searcher: Callable[..., SearchAlgorithm]) -> None:
    searcher = make_searcher(name)
    searcher.run(2)
    saved = searcher.state_dict()
    snapshot = copy.deepcopy(saved)
    searcher.run(2)
    assert_same(saved, snapshot)
    restored = make_searcher(name)
    restored.load_state_dict(saved)
    restored.step()
    assert_same(saved, snapshot)


def test_load_rejects_another_algorithm(make_searcher: Callable[..., SearchAlgorithm]) -> None:
    state = make_searcher("snes").state_dict()
    with pytest.raises(ValueError, match=r"saved by the 'snes' algorithm but is being loaded into PGPE \('pgpe'\)"):
        make_searcher("pgpe").load_state_dict(state)


def test_load_rejects_another_solution_length(make_searcher: Callable[..., SearchAlgorithm]) -> None:
    state = make_searcher("cem").state_dict()
    other = make_searcher("cem", d=3)
    with pytest.raises(ValueError, match="solutions of length 6 but this problem has 3"):
        other.load_state_dict(state)


def test_load_rejects_incomplete_states(make_searcher: Callable[..., SearchAlgorithm]) -> None:
    state = make_searcher("ga").state_dict()
    del state["population"]
    with pytest.raises(ValueError, match=r"lacks the entries \['population'\]"):
        make_searcher("ga").load_state_dict(state)
