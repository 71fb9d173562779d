"""Networks for neuroevolution: the network-string parser, layers and observation statistics."""

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
from hpcne.neuroevolution.net.parser import NetParsingError, str_to_net
from hpcne.neuroevolution.net.runningstat import RunningStat

__all__ = [
    "LSTM",
    "RNN",
    "ActClipLayer",
    "Apply",
    "Bin",
    "Clip",
    "FeedForwardNet",
    "NetParsingError",
    "ObsNormLayer",
    "Round",
    "RunningStat",
    "Slice",
    "layers",
    "reset_module_state",
    "str_to_net",
]
