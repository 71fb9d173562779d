"""hpcne.seeding and hpcne.tools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hpcne.seeding import derive_seed, fresh_seed, generator_for, torch_generator_for
from hpcne.tools import as_numpy, device_of, dtype_of, numpy_dtype_of


def test_derive_seed_is_a_deterministic_function_of_its_keys() -> None:
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    seeds = {derive_seed(1, r, i, e) for r in range(3) for i in range(20) for e in range(3)}
    assert len(seeds) == 180  # neighbouring positions give distinct seeds
    assert derive_seed(1, 2, 3) != derive_seed(1, 23) != derive_seed(12, 3)  # keys are separated
    assert derive_seed(1, 2) != derive_seed(1, 2, 0)
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(2**80, np.int64(4)) == derive_seed(2**80, 4)  # big seeds and numpy ints
    bits = np.array([[(s >> k) & 1 for k in range(63)] for s in seeds])
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.15)  # every bit is used


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_derive_seed_rejects_non_ints(bad) -> None:
    with pytest.raises(ValueError, match="non-negative ints"):
        derive_seed(0, bad)


def test_generators() -> None:
    assert 0 <= fresh_seed() < 2**63 and fresh_seed() != fresh_seed()
    assert np.array_equal(generator_for(5, 1).normal(size=4), generator_for(5, 1).normal(size=4))
    assert not np.array_equal(generator_for(5, 1).normal(size=4), generator_for(5, 2).normal(size=4))
    a = torch.randn(3, generator=torch_generator_for(5, 1))
    assert torch.equal(a, torch.randn(3, generator=torch_generator_for(5, 1)))


def test_dtype_and_device_of() -> None:
    assert dtype_of(torch.zeros(2, dtype=torch.float16)) == torch.float16
    assert dtype_of(nn.Linear(2, 2).double()) == torch.float64
    assert dtype_of(nn.Tanh()) == torch.float32
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(torch.zeros(1)) == torch.device("cpu")
    buffered = nn.BatchNorm1d(2, affine=False).half()
    assert dtype_of(buffered) == torch.float16  # from a buffer when there are no parameters


def test_as_numpy_and_numpy_dtype_of() -> None:
    t = torch.ones(2, requires_grad=True)
    assert as_numpy(t).dtype == np.float32 and as_numpy(t, np.float64).dtype == np.float64
    assert as_numpy([1, 2], "float32").tolist() == [1.0, 2.0]
    assert numpy_dtype_of(torch.float64) == np.float64 and numpy_dtype_of(torch.int32) == np.int32
