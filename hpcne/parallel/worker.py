"""What every worker does with a piece of a population, whatever carried it there."""

from __future__ import annotations

import socket
import traceback
from dataclasses import dataclass

import numpy as np

from hpcne.core import EvalResult, Problem

__all__ = ["Failure", "evaluate_piece"]


@dataclass
class Failure:
    """An exception on a worker, as text that can travel to the coordinator."""

    host: str
    solution_index: int | None
    traceback: str


def evaluate_piece(problem: Problem, values: np.ndarray, start: int, eval_round: int) -> EvalResult | Failure:
    """Evaluate rows ``start, start+1, ...`` of a round; turn an exception into a :class:`Failure`."""
    try:
        return problem._evaluate_local(values, start, eval_round)
    except Exception as err:
        index = getattr(err, "hpcne_solution_index", None)
        return Failure(socket.gethostname(), index, traceback.format_exc())
