"""RunningNorm: masked batch updates agree with RunningStat; merging, clipping and shape errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpcne.neuroevolution.net import RunningStat
from hpcne.neuroevolution.net.runningnorm import RunningNorm


def test_masked_batches_agree_with_running_stat() -> None:
    generator = torch.Generator().manual_seed(0)
    steps = torch.randn(6, 8, 3, generator=generator) * torch.tensor([1.0, 5.0, 0.01]) + 2.0
    masks = torch.rand(6, 8, generator=generator) > 0.3
    norm, stat = RunningNorm(shape=3, dtype=torch.float64), RunningStat(3)
    for x, mask in zip(steps, masks):
        norm.update(x, mask=mask)
        for row in x[mask]:
            stat.update(row.numpy())
    assert norm.count == stat.count == int(masks.sum())
    np.testing.assert_allclose(norm.mean.numpy(), stat.mean, rtol=1e-12)
    np.testing.assert_allclose(norm.stdev.numpy(), stat.stdev, rtol=1e-12)  # the third dimension hits the floor
    assert norm.stdev[2] == pytest.approx(0.1)


def test_merge_clip_and_errors() -> None:
    a, b, both = (RunningNorm(shape=(2,), clip=(-1.0, 1.0)) for _ in range(3))
    xs = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, -5.0]])
    a.update(xs[:1])
    b.update(xs[1:])
    both.update(xs)
    a.update(b)
    torch.testing.assert_close(a.mean, both.mean)
    torch.testing.assert_close(a.stdev, both.stdev)
    assert a.normalize(torch.tensor([100.0, -100.0])).tolist() == [1.0, -1.0]
    empty = RunningNorm(shape=2)
    assert empty.mean.tolist() == [0.0, 0.0] and empty.stdev.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"shape \(\.\.\., \(2,\)\); got \(4, 3\)"):
        empty.update(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="low < high"):
        RunningNorm(shape=2, clip=(1.0, -1.0))
