"""SupervisedNE: losses on seeded minibatches, common or per solution, and a short regression run."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hpcne.algorithms import SNES
from hpcne.neuroevolution import SupervisedNE


def dataset(n: int = 64) -> TensorDataset:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(1))
    return TensorDataset(x, x.sum(dim=-1, keepdim=True))


@pytest.mark.parametrize("common", [True, False])
def test_identical_solutions_see_the_same_minibatches_only_when_common(common: bool) -> None:
    problem = SupervisedNE(
        dataset(), "Linear(2, 1)", nn.MSELoss(), minibatch_size=8, common_minibatch=common, seed=0, num_actors=None
    )
    batch = problem.generate_batch(1)
    batch = batch[[0, 0, 0, 0]]
    problem.evaluate(batch)
    assert (len(set(batch.evals[:, 0].tolist())) == 1) == common


def test_the_whole_dataset_gives_the_exact_loss() -> None:
    data = dataset()
    problem = SupervisedNE(data, nn.Linear(2, 1), nn.MSELoss(), seed=0, num_actors=None)
    solution = problem.generate_batch(1)
    problem.evaluate(solution)
    net = problem.make_net(solution[0])
    expected = float(nn.MSELoss()(net(data.tensors[0]), data.tensors[1]))
    assert solution[0].evaluation == pytest.approx(expected, rel=1e-6)


def test_snes_fits_a_sum_and_errors_are_clear() -> None:
    problem = SupervisedNE(dataset(), "Linear(2, 1)", nn.MSELoss(), minibatch_size=32, seed=0, num_actors=None)
    searcher = SNES(problem, popsize=20, stdev_init=0.5)
    searcher.run(40)
    assert searcher.status["best_eval"] < 0.05
    with pytest.raises(NotImplementedError, match="needs loss_func"):
        bare = SupervisedNE(dataset(), "Linear(2, 1)", num_actors=None)
        bare.evaluate(bare.generate_batch(1))
    with pytest.raises(ValueError, match="non-empty dataset"):
        SupervisedNE(TensorDataset(torch.zeros(0, 2), torch.zeros(0, 1)), "Linear(2, 1)", nn.MSELoss())
