"""Cloning of tensors, solutions and containers of them (EvoTorch's ``tools.cloning``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["clone", "deep_clone", "storage_ptr"]


def clone(x: Any) -> Any:
    """An independent copy of ``x``: its own ``clone()`` where it has one, a deep copy otherwise."""
    return x.clone() if callable(getattr(x, "clone", None)) else copy.deepcopy(x)


def deep_clone(x: Any, *, otherwise_deepcopy: bool = False) -> Any:
    """Clone ``x`` and, inside dicts, lists and tuples, every element.

    Args:
        x: The object to clone.
        otherwise_deepcopy: Deep-copy objects that have no ``clone()`` (else they are shared).
    """
    if isinstance(x, Mapping):
        return type(x)({k: deep_clone(v, otherwise_deepcopy=otherwise_deepcopy) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return type(x)(deep_clone(v, otherwise_deepcopy=otherwise_deepcopy) for v in x)
    if callable(getattr(x, "clone", None)):
        return x.clone()
    return copy.deepcopy(x) if otherwise_deepcopy else x


def storage_ptr(x: torch.Tensor) -> int:
    """The address of the memory a tensor views (equal for tensors that share storage)."""
    return x.untyped_storage().data_ptr()
