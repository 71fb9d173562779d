"""Recurrent layers (EvoTorch's convention and layout), MultiLayered, StatefulModule and parameter vectors."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from hpcne.neuroevolution.net import (
    LSTM,
    RNN,
    MultiLayered,
    StatefulModule,
    count_parameters,
    device_of_module,
    ensure_stateful,
    fill_parameters,
    is_recurrent,
    make_functional_module,
    parameter_vector,
    reset_module_state,
    str_to_net,
)


def run_torch(module: nn.RNN | nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """The last output of a one-layer torch RNN/LSTM over a sequence (no batch dimension)."""
    with torch.no_grad():
        return module(inputs)[0][-1]


def run_ours(layer: RNN | LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """The last output of one of hpcne's layers over a sequence, carrying the state by hand."""
    h = None
    with torch.no_grad():
        for x in inputs:
            y, h = layer(x, h)
    return y


@pytest.mark.parametrize(("ours", "theirs"), [(RNN, nn.RNN), (LSTM, nn.LSTM)])
def test_layout_is_torch_and_evotorch_vector_layout(ours: type[RNN | LSTM], theirs: type[nn.Module]) -> None:
    # EvoTorch's layers flatten like torch's (W_ih, W_hh, b_ih, b_hh, gates stacked i, f, g, o).
    reference = theirs(3, 5)
    layer = ours(3, 5)
    assert count_parameters(layer) == count_parameters(reference)
    fill_parameters(layer, parameter_vector(reference))
    inputs = torch.randn(6, 3)
    torch.testing.assert_close(run_ours(layer, inputs), run_torch(reference, inputs))


def test_rnn_math_and_parameter_count() -> None:
    rnn = RNN(3, 4)
    assert count_parameters(rnn) == 4 * (3 + 4 + 2)
    x1, x2 = torch.randn(3), torch.randn(3)
    y1, h1 = rnn(x1)
    assert y1.shape == (4,) and h1 is y1
    y2, _ = rnn(x2, h1)
    expected = torch.tanh(rnn.weight_ih @ x2 + rnn.bias_ih + rnn.weight_hh @ h1 + rnn.bias_hh)
    torch.testing.assert_close(y2, expected)
    torch.testing.assert_close(rnn(x1)[0], y1)  # no state kept inside the layer
    assert (RNN(3, 4, nonlinearity="relu")(torch.randn(3))[0] >= 0).all()


def test_lstm_math_and_parameter_count() -> None:
    lstm = LSTM(3, 2)
    assert count_parameters(lstm) == 4 * 2 * (3 + 2 + 2)
    x = torch.randn(3)
    _, (h, c) = lstm(x)
    y, (h2, c2) = lstm(x, (h, c))
    gates = lstm.weight_ih @ x + lstm.bias_ih + lstm.weight_hh @ h + lstm.bias_hh
    i, f, g, o = gates.chunk(4)
    torch.testing.assert_close(c2, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
    torch.testing.assert_close(y, torch.sigmoid(o) * torch.tanh(c2))
    assert h2 is y


@pytest.mark.parametrize("layer_class", [RNN, LSTM])
def test_batched_rows_equal_unbatched(layer_class: type[RNN | LSTM]) -> None:
    layer = layer_class(3, 5)
    inputs = torch.randn(4, 2, 3)
    batched = run_ours(layer, inputs)
    for row in range(2):
        torch.testing.assert_close(run_ours(layer, inputs[:, row]), batched[row])


@pytest.mark.parametrize("layer_class", [RNN, LSTM])
def test_wrong_input_size_is_named(layer_class: type[RNN | LSTM]) -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\), but found shape \(4,\)"):
        layer_class(3, 2)(torch.zeros(4))
    with pytest.raises(ValueError, match="'tanh' or 'relu'"):
        RNN(2, 2, nonlinearity="sigmoid")


def test_multilayered_returns_hidden_states_by_layer_index() -> None:
    net = str_to_net("RNN(3, 4) >> Linear(4, 4) >> Tanh() >> LSTM(4, 2)")
    assert isinstance(net, MultiLayered) and len(net) == 4
    x = torch.randn(3)
    y, h = net(x)
    assert set(h) == {0, 3} and y.shape == (2,)
    y2, _ = net(x, h)
    assert not torch.allclose(y2, y)  # the state was used
    torch.testing.assert_close(net(x)[0], y)
    plain = MultiLayered(nn.Linear(3, 2), nn.Tanh())
    out = plain(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tanh(plain[0](x)))


def test_stateful_module_carries_resets_and_copies_fresh() -> None:
    net = StatefulModule(str_to_net("Linear(2, 3) >> RNN(3, 3)"))
    x = torch.randn(2)
    first = net(x)
    second = net(x)
    assert not torch.allclose(first, second)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        torch.testing.assert_close(clone(x), first)
    reset_module_state(nn.Sequential(net))  # finds the wrapper inside other modules
    torch.testing.assert_close(net(x), first)
    assert ensure_stateful(net) is net
    assert count_parameters(net) == count_parameters(net.wrapped_module)


def test_is_recurrent() -> None:
    class UserRecurrent(nn.Module):
        def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    assert is_recurrent(str_to_net("Linear(2, 3) >> LSTM(3, 3)"))
    assert is_recurrent(UserRecurrent())
    assert not is_recurrent(str_to_net("Linear(2, 3) >> Tanh()"))


def test_parameter_vector_helpers() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1, bias=False))
    vector = parameter_vector(net)
    assert vector.shape == (count_parameters(net),) == (3 * 2 + 2 + 2,)
    fill_parameters(net, torch.arange(10.0))
    assert net[0].weight.flatten().tolist() == [0.0, 1, 2, 3, 4, 5] and net[1].weight.tolist() == [[8.0, 9.0]]
    vector[:] = -1  # a copy: the network is unchanged
    assert net[0].bias.tolist() == [6.0, 7.0]
    with pytest.raises(ValueError, match="10 parameters but the vector has shape \\(9,\\)"):
        fill_parameters(net, torch.zeros(9))
    assert device_of_module(net) == torch.device("cpu")
    assert device_of_module(nn.Tanh(), default="meta") == torch.device("meta")


def test_functional_module_runs_given_vectors() -> None:
    net = str_to_net("Linear(3, 4) >> Tanh() >> Linear(4, 2)")
    f = make_functional_module(net)
    x = torch.randn(3)
    torch.testing.assert_close(f(parameter_vector(net), x), net(x))
    vectors = torch.randn(5, count_parameters(net))
    batched = f(vectors, x.expand(5, 3))
    for row, vector in enumerate(vectors):
        fill_parameters(net, vector)
        torch.testing.assert_close(batched[row], net(x))
