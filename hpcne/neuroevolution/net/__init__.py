"""Networks for neuroevolution: the network-string parser, layers, parameter vectors and observation statistics."""

from __future__ import annotations

from hpcne.neuroevolution.net import layers
from hpcne.neuroevolution.net.layers import (
    LSTM,
    RNN,
    ActClipLayer,
    Apply,
    Bin,
    Clip,
    FeedForwardNet,
    ObsNormLayer,
    Round,
    Slice,
    reset_module_state,
)
from hpcne.neuroevolution.net.misc import (
    count_parameters,
    device_of_module,
    fill_parameters,
    make_functional_module,
    parameter_vector,
)
from hpcne.neuroevolution.net.multilayered import MultiLayered
from hpcne.neuroevolution.net.parser import NetParsingError, check_net_string, str_to_net
from hpcne.neuroevolution.net.runningnorm import RunningNorm
from hpcne.neuroevolution.net.runningstat import RunningStat
from hpcne.neuroevolution.net.statefulmodule import StatefulModule, ensure_stateful, is_recurrent

__all__ = [
    "LSTM",
    "RNN",
    "ActClipLayer",
    "Apply",
    "Bin",
    "Clip",
    "FeedForwardNet",
    "MultiLayered",
    "NetParsingError",
    "ObsNormLayer",
    "Round",
    "RunningNorm",
    "RunningStat",
    "Slice",
    "StatefulModule",
    "check_net_string",
    "count_parameters",
    "device_of_module",
    "ensure_stateful",
    "fill_parameters",
    "is_recurrent",
    "layers",
    "make_functional_module",
    "parameter_vector",
    "reset_module_state",
    "str_to_net",
]
