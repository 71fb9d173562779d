"""Tests of the layers: values, shapes, batching and parameter counts (recurrent layers: test_recurrent.py)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box
from torch import nn

from hpcne.neuroevolution.net import (
    ActClipLayer,
    Apply,
    Bin,
    Clip,
    FeedForwardNet,
    ObsNormLayer,
    Round,
    Slice,
)


def n_params(module: nn.Module) -> int:
    """Returns the number of parameter values of `module`."""
    return sum(p.numel() for p in module.parameters())


def assert_batch_consistent(layer: nn.Module, batch: torch.Tensor) -> None:
    """Checks that the batched output equals the row-by-row outputs."""
    rows = torch.stack([layer(row) for row in batch])
    torch.testing.assert_close(layer(batch), rows)


def test_clip() -> None:
    layer = Clip(-1, 0.5)
    x = torch.tensor([-3.0, 0.2, 2.0])
    torch.testing.assert_close(layer(x), torch.tensor([-1.0, 0.2, 0.5]))
    assert_batch_consistent(layer, torch.randn(4, 3))
    assert repr(layer) == "Clip(lb=-1.0, ub=0.5)"


def test_bin() -> None:
    layer = Bin(-1, 3)
    x = torch.tensor([-5.0, 0.9, 1.0, 1.1, 10.0])
    torch.testing.assert_close(layer(x), torch.tensor([-1.0, -1.0, 3.0, 3.0, 3.0]))
    assert layer(x.double()).dtype == torch.float64
    assert_batch_consistent(layer, torch.randn(4, 3))


def test_slice_takes_last_dimension() -> None:
    layer = Slice(1, 3)
    torch.testing.assert_close(layer(torch.arange(5.0)), torch.tensor([1.0, 2.0]))
    assert layer(torch.zeros(7, 5)).shape == (7, 2)
    assert_batch_consistent(layer, torch.randn(4, 5))


def test_round() -> None:
    x = torch.tensor([1.26, -0.74])
    torch.testing.assert_close(Round()(x), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(Round(1)(x), torch.tensor([1.3, -0.7]))
    assert_batch_consistent(Round(2), torch.randn(4, 3))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x ** 2", lambda x: x**2),
        ("torch.tanh(x) * 2", lambda x: torch.tanh(x) * 2),
        ("-x / 2 + 1", lambda x: -x / 2 + 1),
        ("sigmoid(abs(x)) - relu(x)", lambda x: torch.sigmoid(x.abs()) - torch.relu(x)),
        ("clamp(x * 3, -1, 1.5)", lambda x: (x * 3).clamp(-1, 1.5)),
        ("torch.floor(x) + ceil(x) + sign(x)", lambda x: x.floor() + x.ceil() + x.sign()),
        ("exp(x) + log(square(x) + 1) + sqrt(abs(x)) + sin(x) * cos(x)", None),
        ("2", lambda x: torch.full_like(x, 2.0)),
        ("tanh(1) + x", lambda x: x + torch.tanh(torch.tensor(1.0))),
    ],
)
def test_apply_expressions(expr: str, expected: object) -> None:
    layer = Apply(expr)
    x = torch.linspace(-2, 2, 9)
    out = layer(x)
    assert out.shape == x.shape
    if expected is not None:
        torch.testing.assert_close(out, expected(x))
    assert_batch_consistent(layer, torch.randn(3, 4))
    assert repr(layer) == f"Apply({expr!r})"


@pytest.mark.parametrize(
    ("expr", "quoted"),
    [
        ("os.system('ls')", "os.system('ls')"),
        ("__import__('os')", "__import__('os')"),
        ("x.__class__", "x.__class__"),
        ("y + 1", "y"),
        ("x % 2", "x % 2"),
        ("torch.load(x)", "torch.load(x)"),
        ("np.tanh(x)", "np.tanh(x)"),
        ("(lambda: 1)()", "(lambda: 1)()"),
        ("'a'", "'a'"),
        ("tanh(x, 2)", "tanh(x, 2)"),
        ("clamp(x, y, 1)", "y"),
        ("clamp(x, 1)", "clamp(x, 1)"),
        ("[x]", "[x]"),
        ("+x", "+x"),
        ("tanh(x=1)", "tanh(x=1)"),
    ],
)
def test_apply_refuses(expr: str, quoted: str) -> None:
    with pytest.raises(ValueError, match="Apply cannot evaluate") as info:
        Apply(expr)
    assert f"`{quoted}`" in str(info.value)


def test_apply_syntax_error_non_string_and_arithmetic_error() -> None:
    with pytest.raises(ValueError, match="not valid syntax"):
        Apply("x +")
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        Apply("x + 1 / 0")
    with pytest.raises(ValueError, match="OverflowError"):
        Apply("x * 9 ** 9 ** 9")
    with pytest.raises(ValueError, match="as a string"):
        Apply(2)  # type: ignore[arg-type]


def test_apply_survives_pickle_and_deepcopy() -> None:
    layer = Apply("tanh(x) * 3")
    x = torch.randn(5)
    torch.testing.assert_close(pickle.loads(pickle.dumps(layer))(x), layer(x))
    torch.testing.assert_close(copy.deepcopy(layer)(x), layer(x))


def test_feedforward_net() -> None:
    net = FeedForwardNet(4, [(8, "tanh"), (6, "relu", False), (3, "sigmoid"), (2, None), (2, "linear")])
    names = [name for name, _ in net.named_children()]
    assert names == [
        "layer_0",
        "actfunc_0",
        "layer_1",
        "actfunc_1",
        "layer_2",
        "actfunc_2",
        "layer_3",
        "layer_4",
    ]
    assert net.layer_1.bias is None
    assert n_params(net) == (4 * 8 + 8) + 8 * 6 + (6 * 3 + 3) + (3 * 2 + 2) + (2 * 2 + 2)
    x = torch.randn(4)
    expected = net.layer_4(net.layer_3(torch.sigmoid(net.layer_2(torch.relu(net.layer_1(torch.tanh(net.layer_0(x))))))))
    torch.testing.assert_close(net(x), expected)
    assert_batch_consistent(net, torch.randn(5, 4))


def test_feedforward_net_errors() -> None:
    with pytest.raises(ValueError, match="activation among"):
        FeedForwardNet(2, [(3, "softmax")])
    with pytest.raises(ValueError, match="layer 0 is 3"):
        FeedForwardNet(2, [3])  # type: ignore[list-item]


def test_obs_norm_layer() -> None:
    layer = ObsNormLayer.from_arrays([1.0, 2.0], [2.0, 4.0])
    torch.testing.assert_close(layer(torch.tensor([3.0, 2.0])), torch.tensor([1.0, 0.0]))
    assert layer.obs_mean.dtype == torch.float32
    assert n_params(layer) == 0
    assert set(dict(layer.named_buffers())) == {"obs_mean", "obs_stdev"}
    assert_batch_consistent(layer, torch.randn(3, 2))
    trainable = ObsNormLayer.from_arrays(np.zeros(2), np.ones(2), trainable_stats=True)
    assert n_params(trainable) == 4
    with pytest.raises(ValueError, match="same shape"):
        ObsNormLayer.from_arrays([0.0], [1.0, 1.0])


def test_act_clip_layer_from_box_and_arrays() -> None:
    box = Box(low=np.array([-1.0, 0.0], dtype=np.float32), high=np.array([1.0, 2.0], dtype=np.float32))
    x = torch.tensor([[-5.0, 5.0], [0.5, 1.0]])
    expected = torch.tensor([[-1.0, 2.0], [0.5, 1.0]])
    torch.testing.assert_close(ActClipLayer(box)(x), expected)
    torch.testing.assert_close(ActClipLayer([-1.0, 0.0], [1.0, 2.0])(x), expected)
    assert set(dict(ActClipLayer(box).named_buffers())) == {"low", "high"}
    with pytest.raises(ValueError, match="drop the high"):
        ActClipLayer(box, [1.0, 2.0])
    with pytest.raises(ValueError, match="high bounds too"):
        ActClipLayer([-1.0, 0.0])
