"""MultiLayered: a chain of layers, some of them recurrent (what a ``>>`` network string builds)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["MultiLayered"]


class MultiLayered(nn.Sequential):
    """Layers applied in order, like ``nn.Sequential``, that may include recurrent layers.

    A layer returning a tuple ``(y, h)`` is recurrent (EvoTorch's convention); ``forward(x, h)``
    then takes and returns the hidden states of all recurrent layers as a dict keyed by the
    layer's index. Without recurrent layers, ``forward(x)`` returns just the output.
    """

    def __init__(self, *layers: nn.Module) -> None:
        """Chain ``layers`` (indexable as ``net[i]``; ``len(net)`` counts them)."""
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, h: dict[int, Any] | None = None) -> Any:
        """Apply the layers; return ``y``, or ``(y, hidden states by layer index)`` if any layer is recurrent."""
        h = h or {}
        new_h: dict[int, Any] = {}
        for i, layer in enumerate(self):
            result = layer(x) if h.get(i) is None else layer(x, h[i])
            if isinstance(result, tuple):
                if len(result) != 2:
                    raise ValueError(
                        f"Layer {i} ({type(layer).__name__}) returned a tuple of {len(result)} items; "
                        "a layer returns a tensor, or (output, hidden state) if it is recurrent."
                    )
                x, new_h[i] = result
            elif isinstance(result, torch.Tensor):
                x = result
            else:
                raise TypeError(
                    f"Layer {i} ({type(layer).__name__}) returned a {type(result).__name__}; "
                    "a layer returns a tensor, or (output, hidden state) if it is recurrent."
                )
        return (x, new_h) if new_h else x
