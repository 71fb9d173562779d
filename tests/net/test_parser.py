"""Tests of str_to_net: the supported syntax, and the refusal of everything else without running it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hpcne.neuroevolution.net import (
    LSTM,
    RNN,
    Apply,
    Clip,
    FeedForwardNet,
    MultiLayered,
    NetParsingError,
    ObsNormLayer,
    RunningStat,
    check_net_string,
    str_to_net,
)

CONSTANTS = {"obs_length": 4, "act_length": 2, "obs_shape": (4, 3), "hidden_dim": 8, "bias": False}


def parse(s: str) -> nn.Module:
    """Parses `s` with the test constants."""
    return str_to_net(s, **CONSTANTS)


def layer_types(module: nn.Module) -> list[type[nn.Module]]:
    """Returns the types of the layers of a Sequential."""
    return [type(layer) for layer in module]


def test_chain_builds_sequential() -> None:
    net = parse("Linear(obs_length, 64) >> Tanh() >> Linear(64, act_length)")
    assert isinstance(net, nn.Sequential)
    assert layer_types(net) == [nn.Linear, nn.Tanh, nn.Linear]
    assert (net[0].in_features, net[2].out_features) == (4, 2)
    assert net(torch.zeros(4)).shape == (2,)


def test_single_layer_is_returned_itself() -> None:
    net = parse("Linear(3, 2)")
    assert type(net) is nn.Linear


def test_nested_chains_are_flattened() -> None:
    net = parse("(Linear(3, 2) >> Tanh()) >> (Linear(2, 2) >> ReLU())")
    assert layer_types(net) == [nn.Linear, nn.Tanh, nn.Linear, nn.ReLU]


def test_keywords_constants_and_indexing() -> None:
    net = parse("Linear(obs_shape[0], hidden_dim, bias=bias) >> Linear(hidden_dim, obs_shape[-1])")
    assert (net[0].in_features, net[0].out_features, net[0].bias) == (4, 8, None)
    assert net[1].out_features == 3


def test_literals_and_negative_numbers() -> None:
    net = parse("Clip(-1.5, 2) >> Clip(-act_length, obs_shape[1]) >> Apply('x * 2') >> Linear(3, 3, bias=True)")
    assert (net[0].lb, net[0].ub) == (-1.5, 2.0)
    assert (net[1].lb, net[1].ub) == (-2.0, 3.0)
    assert net[2].expr == "x * 2"
    assert net[3].bias is not None
    assert isinstance(parse("Dropout(p=0.5, inplace=False)"), nn.Dropout)
    assert parse("Flatten(0, -1)").end_dim == -1
    assert isinstance(parse("Identity(None)"), nn.Identity)


def test_tuples_and_lists() -> None:
    net = parse("FeedForwardNet(obs_length, [(hidden_dim, 'tanh'), (act_length, None, False)])")
    assert isinstance(net, FeedForwardNet)
    assert net.layer_1.bias is None
    assert parse("Unflatten(0, (2, 2))").unflattened_size == (2, 2)


def test_own_layers_take_precedence_over_torch() -> None:
    net = parse("RNN(obs_length, 5, nonlinearity='relu') >> LSTM(5, act_length)")
    assert layer_types(net) == [RNN, LSTM]


def test_layer_objects_can_be_passed_as_constants() -> None:
    stat = RunningStat()
    stat.update(torch.randn(10, 4))
    net = str_to_net("ObsNormLayer(stats) >> Linear(4, 2)", stats=stat)
    assert isinstance(net[0], ObsNormLayer)


@pytest.mark.parametrize(
    "s",
    [
        "Linear(obs_length, 16)  # input layer\n>> Tanh()\n>> Linear(16, act_length)",
        "\n    Linear(obs_length, 16) >>  # input layer\n    Tanh() >>\n    Linear(16, act_length)  # out\n",
        "(\n  Linear(obs_length, 16)\n  >> Tanh()\n  >> Linear(16, act_length)\n)",
        "# a policy\nLinear(obs_length, 16)\n  >> Tanh()\n      >> Linear(16, act_length)\n# done",
    ],
)
def test_multiline_strings_with_comments(s: str) -> None:
    assert layer_types(parse(s)) == [nn.Linear, nn.Tanh, nn.Linear]


def test_hash_inside_string_literal_is_not_a_comment() -> None:
    net = parse("Apply('x') >> Apply(\"x # not a comment\") >> Tanh()")
    assert isinstance(net[1], Apply)
    assert net[1].expr == "x # not a comment"


@pytest.mark.parametrize(
    ("s", "quoted"),
    [
        ("Linear(3, __import__('os').getpid())", "__import__('os').getpid()"),
        ("Linear(3,2).__class__", "Linear(3,2).__class__"),
        ("eval('1')", "eval"),
        ("exec('import os')", "exec"),
        ("getattr(Linear, 'x')", "getattr"),
        ("open('/etc/passwd')", "open"),
        ("__import__('os')", "__import__"),
        ("torch.nn.Linear(3, 2)", "torch.nn.Linear"),
        ("nn.Linear(3, 2)", "nn.Linear"),
        ("Linear(x.y, 2)", "x.y"),
        ("Linear(3 + 4, 2)", "3 + 4"),
        ("Linear(obs_length * 2, 2)", "obs_length * 2"),
        ("Linear(3, 2) >> Tanh() * 2", "Tanh() * 2"),
        ("Linear(lambda: 3, 2)", "lambda: 3"),
        ("Linear([i for i in obs_shape], 2)", "[i for i in obs_shape]"),
        ("Linear((i for i in obs_shape), 2)", "(i for i in obs_shape)"),
        ("Linear(3, unknown)", "unknown"),
        ("Linear((4, 3)[0], 2)", "(4, 3)[0]"),
        ("Linear(Linear(3, 2), 2)", "Linear(3, 2)"),
        ("Linear(*obs_shape)", "*obs_shape"),
        ("Linear(3, 2, **options)", "**options"),
        ("Linear(3, 2) >> 5", "5"),
        ("Linear(3, 2) >> obs_length", "obs_length"),
        ("Linear(3, 2) >> Tanh", "Tanh"),
        ("Linear(3, --2)", "--2"),
        ("Linear(3, -'a')", "-'a'"),
        ("Linear(3, not 2)", "not 2"),
        ("Linear(3, 2 if bias else 3)", "2 if bias else 3"),
        ("Linear(3, f'{obs_length}')", "f'{obs_length}'"),
        ("Linear(3, b'x')", "b'x'"),
        ("Linear(3, {'a': 1})", "{'a': 1}"),
        ("Linear(3, obs_shape[0:1])", "0:1"),
        ("Linear(3, obs_shape[9])", "obs_shape[9]"),
        ("Linear(3, (x := 2))", "x := 2"),
        ("Linear(3, 2) >> _Loss()", "_Loss"),
        ("Linear(3, 2) >> functional()", "functional"),
        ("Linear(3, 2) >> init.zeros_()", "init.zeros_"),
        ("(Linear(3, 2), Tanh())", "(Linear(3, 2), Tanh())"),
        ("[Linear(3, 2)]", "[Linear(3, 2)]"),
    ],
)
def test_refused_constructs_quote_the_source(s: str, quoted: str) -> None:
    with pytest.raises(NetParsingError) as info:
        parse(s)
    assert f"`{quoted}`" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_injection_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    with pytest.raises(NetParsingError, match="attribute access"):
        str_to_net(f'Linear(3, 2) >> __import__("os").system("touch {target}")')
    with pytest.raises(NetParsingError):
        str_to_net(f"Linear(3, __import__('os').system('touch {target}'))")
    with pytest.raises(NetParsingError):
        str_to_net(f"Apply(\"__import__('os').system('touch {target}')\")")
    assert not target.exists()


def test_unknown_layer_suggests_close_matches() -> None:
    with pytest.raises(NetParsingError, match="Did you mean Linear"):
        parse("Linaer(3, 2)")


def test_unknown_constant_lists_available_constants() -> None:
    with pytest.raises(NetParsingError, match="Did you mean obs_length") as info:
        parse("Linear(obs_lenght, 2)")
    assert "act_length, bias, hidden_dim, obs_length, obs_shape" in str(info.value)
    with pytest.raises(NetParsingError, match="Available constants: none"):
        str_to_net("Linear(n, 2)")


def test_layer_name_without_call_suggests_call() -> None:
    with pytest.raises(NetParsingError, match=r"Write `Tanh\(\)`"):
        parse("Linear(3, 2) >> Tanh")


def test_constructor_error_names_layer_and_original_error() -> None:
    with pytest.raises(NetParsingError, match="arguments that Linear accepts") as info:
        parse("Linear(3, 2, foo=1)")
    assert "unexpected keyword argument 'foo'" in str(info.value)
    assert "Linear(in_features, out_features, bias=True" in str(info.value)
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(NetParsingError, match="Apply cannot evaluate `y`"):
        parse("Apply('y * 2')")


def test_error_reports_line_and_column() -> None:
    with pytest.raises(NetParsingError, match=r"`Tanh\(\) \+ 1` \(line 2, column 4\)"):
        parse("Linear(3, 2)\n>> Tanh() + 1")


@pytest.mark.parametrize(
    ("s", "message"),
    [
        ("Linear(3, 2", "never closed"),
        ("Linear(3, 2) >>", "invalid syntax at line 1"),
        ("Linear(3, 2)) >> (Tanh()", "found a closing parenthesis before its opening one"),
        ("Linear(3, 2), Tanh()", "found items separated by commas"),
        ("Linear(3, 2) for x in obs_shape", "found a generator expression"),
        ("", "found no layer"),
        ("  # only a comment", "found no layer"),
    ],
)
def test_malformed_strings(s: str, message: str) -> None:
    with pytest.raises(NetParsingError, match=message):
        parse(s)


def test_result_works_with_clip_layer() -> None:
    net = parse("Linear(obs_length, act_length) >> Clip(-0.1, 0.1)")
    assert isinstance(net[1], Clip)
    assert net(torch.randn(10, 4) * 100).abs().max() <= 0.1


def test_chains_are_multilayered() -> None:
    net = str_to_net("Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)", **CONSTANTS)
    assert isinstance(net, MultiLayered) and isinstance(net, nn.Sequential) and len(net) == 3


def test_an_index_must_be_simple_and_is_reported_at_its_column() -> None:
    with pytest.raises(NetParsingError, match=r"\(line 1, column 10\): expected a simple index"):
        str_to_net("Linear(i[1 + 2], 2)", i=(1, 2, 3, 4))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('Linear(3, 2) >> __import__("os").system("x")', "a bare layer name"),
        ("Linear(3, 2) +", "Cannot parse"),
        ("Lnear(obs_length, 2)", "Did you mean Linear"),
        ("Linear(obs_length, hidden[1 + 1])", "a simple index"),
        ("Linear(3, 2 * hidden)", "arithmetic"),
    ],
)
def test_check_net_string_refuses_the_form_without_constants(text: str, match: str) -> None:
    with pytest.raises(NetParsingError, match=match):
        check_net_string(text)


def test_check_net_string_accepts_unknown_constants() -> None:
    check_net_string("Linear(obs_length, hidden[0]) >> Clip(-bound, bound) >> LSTM(hidden[0], act_length)")
