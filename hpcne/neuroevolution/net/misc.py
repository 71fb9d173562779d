"""Parameter vectors of networks: count, flatten, fill, and call a network with a given vector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["count_parameters", "device_of_module", "fill_parameters", "make_functional_module", "parameter_vector"]


def count_parameters(net: nn.Module) -> int:
    """The number of parameters of ``net`` (the length of its parameter vector)."""
    return sum(p.numel() for p in net.parameters())


def parameter_vector(net: nn.Module, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The parameters of ``net`` flattened into one vector, in ``net.parameters()`` order (a copy)."""
    vector = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).clone()
    return vector if device is None else vector.to(device)


def fill_parameters(net: nn.Module, vector: torch.Tensor) -> None:
    """Copy ``vector`` into the parameters of ``net`` (in ``net.parameters()`` order).

    Raises:
        ValueError: If the vector's length is not the network's parameter count.
    """
    vector = torch.as_tensor(vector)
    if vector.ndim != 1 or vector.numel() != count_parameters(net):
        raise ValueError(
            f"The network has {count_parameters(net)} parameters but the vector has shape {tuple(vector.shape)}; "
            "give a 1-D vector of exactly that length."
        )
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(vector.to(next(net.parameters()).device), net.parameters())


def device_of_module(net: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the first parameter (or buffer) of ``net``; ``default`` if it has none."""
    for t in (*net.parameters(), *net.buffers()):
        return t.device
    return torch.device(default)


def make_functional_module(net: nn.Module) -> Callable[..., Any]:
    """A function ``f(vector, x, *args)`` that runs ``net`` with the parameters in ``vector``.

    ``vector`` may have leading batch dimensions (one parameter vector per row, with matching
    rows of ``x``), which are mapped with ``torch.func.vmap``.
    """
    names = [name for name, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]

    def call(vector: torch.Tensor, *args: Any) -> Any:
        if vector.ndim > 1:
            return torch.func.vmap(call)(vector, *args)
        pieces = torch.split(vector, sizes)
        params = {name: piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return torch.func.functional_call(net, params, args)

    return call
