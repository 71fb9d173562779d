"""Loggers attached to a searcher's ``log_hook`` (EvoTorch's ``evotorch.logging``): stdout and pandas."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from hpcne.algorithms.base import check_int
from hpcne.core import Solution

if TYPE_CHECKING:
    from hpcne.algorithms.base import SearchAlgorithm

__all__ = ["Logger", "PandasLogger", "StdOutLogger", "scalar_items"]


def scalar_items(status: Mapping[str, Any]) -> dict[str, Any]:
    """Return the scalar entries of ``status`` (numbers, strings, bools, 0-d tensors as Python numbers)."""
    scalars: dict[str, Any] = {}
    for key, value in status.items():
        if isinstance(value, torch.Tensor) and value.ndim == 0:
            scalars[key] = value.item()
        elif isinstance(value, (numbers.Number, str)):
            scalars[key] = value
    return scalars


class Logger:
    """Base class: attaches itself to ``searcher.log_hook`` and logs every ``interval`` steps.

    As in EvoTorch, steps ``interval, 2 interval, ...`` are logged, or with ``after_first_step``
    steps ``1, interval + 1, 2 interval + 1, ...``. The step number is the status's ``iter``, so a
    searcher restored from a state dict keeps the same schedule.
    """

    def __init__(self, searcher: SearchAlgorithm, *, interval: int = 1, after_first_step: bool = False) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is logged.
            interval: Log every this many steps (>= 1).
            after_first_step: Log at step 1 and every ``interval`` steps after it.
        """
        self.interval = check_int("interval", interval, minimum=1)
        self.after_first_step = bool(after_first_step)
        searcher.log_hook.append(self)

    def __call__(self, status: Mapping[str, Any]) -> None:
        """Log ``status`` if its step is on the schedule."""
        step = int(status["iter"]) - (1 if self.after_first_step else 0)
        if step % self.interval == 0:
            self._log(status)

    def _log(self, status: Mapping[str, Any]) -> None:
        """Record one status; subclasses implement it."""
        raise NotImplementedError


def _describe(value: Any) -> str:
    """Render a status value in one short line, summarising tensors and solutions."""
    if isinstance(value, Solution):
        return f"<solution eval={value.evaluation:.6g} norm={float(torch.linalg.vector_norm(value.values)):.6g}>"
    if isinstance(value, torch.Tensor) and value.ndim > 0:
        norm = float(torch.linalg.vector_norm(value.double()))
        return f"<tensor shape={tuple(value.shape)} norm={norm:.6g}>"
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class StdOutLogger(Logger):
    """Prints each logged status as an aligned ``key : value`` block; tensors show shape and norm only."""

    def __init__(
        self,
        searcher: SearchAlgorithm,
        *,
        interval: int = 1,
        after_first_step: bool = False,
        leading_keys: Iterable[str] = ("iter",),
    ) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is printed.
            interval: Print every this many steps.
            after_first_step: Print at step 1 and every ``interval`` steps after it.
            leading_keys: Keys printed first, in this order.
        """
        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self.leading_keys = tuple(leading_keys)

    def _log(self, status: Mapping[str, Any]) -> None:
        keys = [k for k in self.leading_keys if k in status]
        keys += [k for k in status if k not in self.leading_keys]
        width = max(len(str(k)) for k in keys)
        lines = [f"{str(k).rjust(width)} : {_describe(status[k])}" for k in keys]
        print("\n".join(lines), end="\n\n")


class PandasLogger(Logger):
    """Collects the scalar status entries of each logged step; :meth:`to_dataframe` returns them."""

    def __init__(self, searcher: SearchAlgorithm, *, interval: int = 1, after_first_step: bool = False) -> None:
        """Create the logger and attach it.

        Args:
            searcher: The searcher whose status is collected.
            interval: Collect every this many steps.
            after_first_step: Collect at step 1 and every ``interval`` steps after it.
        """
        super().__init__(searcher, interval=interval, after_first_step=after_first_step)
        self._rows: list[dict[str, Any]] = []

    def _log(self, status: Mapping[str, Any]) -> None:
        self._rows.append(scalar_items(status))

    def to_dataframe(self, *, index: str | None = "iter") -> pd.DataFrame:
        """Return one row per logged step and one column per scalar status key.

        Args:
            index: The column to use as the index, or None for a plain range index.
        """
        frame = pd.DataFrame(self._rows)
        return frame if index is None or frame.empty else frame.set_index(index)
