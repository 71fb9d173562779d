"""The seed examples in examples/ run as written (EvoTorch code with ``hpcne`` imports), on a small budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hpcne_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def needs_searchers() -> None:
    # The only optional dependency: the search algorithms (and their PandasLogger) that the
    # examples use to train are developed separately from the problems tested here.
    pytest.importorskip("hpcne.algorithms")
    pytest.importorskip("hpcne.logging")


def accuracy(network: nn.Module, samples: int = 2000) -> float:
    x = torch.randn(samples, 3, generator=torch.Generator().manual_seed(0))
    return float((torch.sign(network(x)[:, 0]) == torch.sign(x.sum(dim=1))).float().mean())


def test_network_forms() -> None:
    problems = load("network_forms").main()
    first = {name: next(m for m in p.network.modules() if isinstance(m, nn.Linear)) for name, p in problems.items()}
    assert first["string with a constant"].in_features == 15  # d from _network_constants
    assert first["function with a constant"].in_features == 15
    assert first["string with network_args"].out_features == 17  # hidden_dim from network_args
    assert first["class with network_args"].out_features == 17
    assert problems["module instance"].solution_length == 4
    lazy = problems["string with a constant"]
    batch = lazy.generate_batch(3)
    lazy.evaluate(batch)
    assert batch.is_evaluated


def test_sign_prediction_with_pgpe_and_pandas_logger() -> None:
    needs_searchers()
    torch.manual_seed(0)  # the guide's fitness function samples from torch's global generator
    problem, searcher, progress = load("sign_prediction").main(generations=15)
    assert len(progress) == 15
    assert progress["mean_eval"].iloc[-3:].mean() > progress["mean_eval"].iloc[:3].mean()
    trained = problem.parameterize_net(searcher.status["center"])
    assert accuracy(trained) > 0.85
    assert float(trained(torch.tensor([[1.0, 2.0, 3.0]]))) > 0 > float(trained(torch.tensor([[-1.0, 1.0, -1.0]])))


def test_sign_prediction_subclass_with_make_gaussian() -> None:
    needs_searchers()
    module = load("sign_prediction_subclass")
    problem, searcher = module.main(generations=10, seed=1)
    assert accuracy(problem.parameterize_net(searcher.status["center"])) > 0.8
    _, again = module.main(generations=10, seed=1)
    assert torch.equal(again.status["center"], searcher.status["center"])  # make_gaussian follows the seed


def test_gymne_cartpole() -> None:
    needs_searchers()
    problem, searcher = load("gymne_cartpole").main(generations=3, popsize=10, num_actors=None)
    assert searcher.status["iter"] == 3
    assert problem.episode_count >= 30 and problem.get_observation_stats().count > problem.interaction_count


def test_vecgymne_cartpole_solves_cartpole() -> None:
    """The example's settings reach 475 within a few generations (9 with its seed)."""
    needs_searchers()
    problem, searcher, score = load("vecgymne_cartpole").main(generations=30)
    assert score >= 475, f"the centre scored {score} after {searcher.status['iter']} generations"
    assert problem.episode_count == 50 * searcher.status["iter"]
