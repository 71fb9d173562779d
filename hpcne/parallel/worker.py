"""What every worker does with a piece of a population, whatever carried it there."""

from __future__ import annotations

import socket
import time
import traceback
from dataclasses import dataclass

import numpy as np

from hpcne.core import EvalResult, Problem
from hpcne.parallel.signals import Interrupted
from hpcne.watchdog import watching

__all__ = ["Failure", "describe_exception", "describe_piece", "evaluate_piece"]


@dataclass
class Failure:
    """An exception on a worker, as text that can travel to the coordinator."""

    host: str
    solution_index: int | None
    traceback: str


def describe_exception(err: BaseException) -> Failure:
    """Turn an exception (with the solution index annotated on it, if any) into a :class:`Failure`."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return Failure(socket.gethostname(), getattr(err, "hpcne_solution_index", None), text)


def describe_piece(start: int, count: int, eval_round: int) -> str:
    """``"solutions 8-11 of round 3"``: a piece of a population, for messages."""
    rows = f"solution {start}" if count == 1 else f"solutions {start}-{start + count - 1}"
    return f"{rows} of evaluation round {eval_round}"


def evaluate_piece(problem: Problem, values: np.ndarray, start: int, eval_round: int) -> EvalResult | Failure:
    """Evaluate rows ``start, start+1, ...`` of a round; turn an exception into a :class:`Failure`.

    Any exception counts, ``SystemExit`` and ``KeyboardInterrupt`` raised by an environment or a
    fitness function included: leaving the process from there would leave the others waiting.

    An empty piece (a rank with no rows when the population is smaller than the job) is not
    handed to the problem.
    """
    if len(values) == 0:
        return EvalResult(np.empty(0))
    started = time.perf_counter()
    try:
        with watching(describe_piece(start, len(values), eval_round)):
            result = problem._evaluate_local(values, start, eval_round)
    except Interrupted:  # the user's own Ctrl-C, twice: not a failure of this solution
        raise
    except BaseException as err:  # SystemExit or KeyboardInterrupt from user code fails its solution too
        return describe_exception(err)
    result.seconds = time.perf_counter() - started
    return result
