"""Batched policies: a row's output depends only on its own parameters and observation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hpcne.neuroevolution.net import RNN, Clip, str_to_net
from hpcne.neuroevolution.policies import ModuleLoop, NumpyMLP, make_batched_policy

NETWORKS = {
    "cartpole": "Linear(4, 16) >> Tanh() >> Linear(16, 2)",
    "cheetah": "Linear(17, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, 6)",
    "activations": "Linear(5, 7) >> ReLU() >> Linear(7, 7) >> Sigmoid() >> Linear(7, 3, bias=False) >> Hardtanh()",
    "leading-activation": "Tanh() >> Linear(3, 4) >> Clip(-0.5, 0.5) >> Identity() >> Linear(4, 2)",
}


def random_rows(net: nn.Module, n: int, in_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    length = sum(p.numel() for p in net.parameters())
    in_features = in_features or next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features
    return rng.normal(size=(n, length)).astype(np.float32), 3 * rng.normal(size=(n, in_features)).astype(np.float32)


@pytest.mark.parametrize("name", NETWORKS)
def test_numpy_mlp_rows_are_independent_of_slot_and_slot_count(name: str) -> None:
    net = str_to_net(NETWORKS[name])
    params, obs = random_rows(net, 5)
    reference = {}
    for slots in (1, 2, 7, 32):
        policy = make_batched_policy(net, slots)
        assert isinstance(policy, NumpyMLP)
        order = [(slot * 3) % 5 for slot in range(slots)]  # solutions land in various slots
        for slot, k in enumerate(order):
            policy.load(slot, params[k])
        batch = obs[order].copy()
        out = policy(batch).copy()
        assert np.array_equal(batch, obs[order])  # the observations are not modified in place
        for slot, k in enumerate(order):
            reference.setdefault(k, out[slot])
            assert np.array_equal(out[slot], reference[k])
        for rows in ([0], [1, slots - 1], list(range(slots))):  # only the busy rows: row by row when few
            rows = sorted(set(r for r in rows if r < slots))
            out = policy(batch, rows)
            assert np.array_equal(batch, obs[order])
            assert all(np.array_equal(out[r], reference[order[r]]) for r in rows)
    for k, row in reference.items():  # and they agree with torch up to rounding
        nn.utils.vector_to_parameters(torch.from_numpy(params[k]), net.parameters())
        with torch.no_grad():
            expected = net(torch.from_numpy(obs[k])).numpy()
        assert np.allclose(row, expected, rtol=1e-5, atol=1e-5)


def test_module_loop_for_other_networks_and_errors_name_the_slot() -> None:
    net = nn.Sequential(RNN(3, 4), nn.Linear(4, 2))
    policy = make_batched_policy(net, 3)
    assert isinstance(policy, ModuleLoop)
    params, obs = random_rows(net, 3, in_features=3)
    for slot in range(3):
        policy.load(slot, params[slot])
    first = policy(obs).copy()
    assert not np.array_equal(policy(obs), first)  # the hidden state moved on
    for slot in range(3):
        policy.reset(slot)
    assert np.array_equal(policy(obs), first)
    policy.reset(1)
    assert np.array_equal(policy(obs, [1])[1], first[1])  # only the requested row is computed
    with pytest.raises(ValueError, match="RNN expected inputs") as info:
        policy(np.zeros((3, 5), np.float32))
    assert info.value.hpcne_slot == 0


def test_make_batched_policy_choices() -> None:
    assert isinstance(make_batched_policy(str_to_net("Linear(2, 2)"), 2, kind="module"), ModuleLoop)
    assert isinstance(make_batched_policy(nn.Sequential(nn.Linear(2, 2), Clip(-1, 1)), 2), NumpyMLP)
    with pytest.raises(ValueError, match="not one"):
        make_batched_policy(nn.Sequential(RNN(2, 2)), 2, kind="numpy")
    with pytest.raises(ValueError, match="policy kind"):
        make_batched_policy(nn.Linear(2, 2), 2, kind="fast")
