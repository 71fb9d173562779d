"""StatefulModule: carry a recurrent network's hidden state between calls, for rollouts."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from hpcne.neuroevolution.net.layers import _RecurrentLayer
from hpcne.neuroevolution.net.multilayered import MultiLayered

__all__ = ["StatefulModule", "ensure_stateful", "is_recurrent"]


class StatefulModule(nn.Module):
    """Wraps a module: ``forward(x)`` feeds it the kept hidden state and keeps the new one.

    The wrapped module follows EvoTorch's convention: ``forward(x, h=None)`` returns
    ``(y, new_h)`` if it is recurrent, or just ``y``. Call :meth:`reset` (or
    :func:`~hpcne.neuroevolution.net.reset_module_state`) at every episode start.
    """

    def __init__(self, wrapped_module: nn.Module) -> None:
        """Wrap ``wrapped_module`` (its parameters keep their order, so parameter vectors match)."""
        super().__init__()
        self.wrapped_module = wrapped_module
        self._hidden: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: the output for ``x``, continuing from the kept hidden state."""
        result = self.wrapped_module(x) if self._hidden is None else self.wrapped_module(x, self._hidden)
        if isinstance(result, tuple):
            y, self._hidden = result
            return y
        return result

    def reset(self) -> None:
        """Forget the hidden state: the next call starts from the module's initial state."""
        self._hidden = None

    def __getstate__(self) -> dict[str, Any]:
        """The state without the hidden state: copies start fresh (and deepcopy refuses autograd graphs)."""
        return {**self.__dict__, "_hidden": None}


def is_recurrent(net: nn.Module) -> bool:
    """Whether ``net`` holds hpcne's RNN/LSTM layers or its ``forward`` takes a hidden state after ``x``."""
    if any(isinstance(m, _RecurrentLayer) for m in net.modules()):
        return True
    if isinstance(net, MultiLayered):  # takes a hidden state only to pass it to its layers
        return any(is_recurrent(layer) for layer in net)
    try:
        parameters = list(inspect.signature(net.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in parameters) >= 2


def ensure_stateful(net: nn.Module) -> StatefulModule:
    """``net`` wrapped in a :class:`StatefulModule`, unless it already is one."""
    return net if isinstance(net, StatefulModule) else StatefulModule(net)
