"""The search-algorithm base class: the step loop, hooks, status, best-so-far and state dicts."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from hpcne.core import STREAM_SEARCHER, Problem, SolutionBatch
from hpcne.seeding import derive_seed
from hpcne.tools.hook import Hook

__all__ = ["Hook", "SearchAlgorithm", "check_int", "check_obj_index", "check_positive"]


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` as an int after checking that it is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking that it is a positive number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}.")
    return float(value)


def check_obj_index(obj_index: int | None) -> None:
    """Accept only EvoTorch's single-objective ``obj_index`` values, None and 0."""
    if obj_index not in (None, 0):
        raise ValueError(f"obj_index must be None or 0; got {obj_index!r}. hpcne problems have a single objective.")


def _batch_state(batch: SolutionBatch) -> dict[str, torch.Tensor]:
    return {"values": batch.values.clone(), "evals": batch.evals.clone()}


def _batch_from_state(problem: Problem, state: Mapping[str, torch.Tensor]) -> SolutionBatch:
    return SolutionBatch(problem, values=state["values"].clone(), evals=state["evals"].clone())


class SearchAlgorithm:
    """Base class of all searchers: public :meth:`step` runs the hooks around the subclass's :meth:`_step`.

    Subclasses set :attr:`name` (their registry key), implement :meth:`_step` (which must leave an
    evaluated :attr:`population`), and list in :attr:`_state_attrs` the attributes that hold their
    evolving state (tensors, numbers, or objects with ``state_dict``/``load_state_dict``).

    Attributes:
        problem: The problem being solved.
        population: The last evaluated :class:`~hpcne.core.SolutionBatch`, or None before the first step.
        step_count: Number of steps taken.
        before_step_hook: Functions called without arguments before each step.
        after_step_hook: Functions called without arguments after each step; dicts they return are
            merged into the status.
        log_hook: Functions called with the status after each step (loggers attach here).
        end_of_run_hook: Functions called with the status at the end of :meth:`run`.
    """

    name: ClassVar[str] = ""
    _state_attrs: ClassVar[tuple[str, ...]] = ()
    _carries_population: ClassVar[bool] = False

    def __init__(self, problem: Problem, **status_getters: Callable[[], Any]) -> None:
        """Create the searcher.

        Args:
            problem: The problem to solve.
            status_getters: Extra status entries, each computed after every step by calling the
                function given for its key (EvoTorch's convention, e.g. ``center=self._get_center``).
        """
        self.problem = problem
        self.population: SolutionBatch | None = None
        self.step_count = 0
        self.before_step_hook = Hook()
        self.after_step_hook = Hook()
        self.log_hook = Hook()
        self.end_of_run_hook = Hook()
        self._status_getters = dict(status_getters)
        self._generator = torch.Generator().manual_seed(derive_seed(problem.seed, STREAM_SEARCHER))
        self._best: SolutionBatch | None = None
        self._status: dict[str, Any] | None = None

    # ------------------------------------------------------------------ loop
    def _step(self) -> None:
        """Advance one generation, leaving an evaluated population in :attr:`population`."""
        raise NotImplementedError

    def step(self) -> None:
        """Take one step: hooks, :meth:`_step`, best-so-far and status bookkeeping, logging."""
        self.before_step_hook()
        self._step()
        self.step_count += 1
        self._track_best()
        self._status = self._compose_status()
        self._status.update(self.after_step_hook() or {})
        self.log_hook(dict(self._status))

    def run(self, num_generations: int) -> None:
        """Take ``num_generations`` steps, then call :attr:`end_of_run_hook` with the status.

        Args:
            num_generations: Number of steps (a non-negative int).
        """
        for _ in range(check_int("num_generations", num_generations, minimum=0)):
            self.step()
        self.end_of_run_hook(dict(self.status))

    @property
    def steps_count(self) -> int:
        """EvoTorch's name for :attr:`step_count`."""
        return self.step_count

    # ---------------------------------------------------------------- status
    @property
    def status(self) -> dict[str, Any]:
        """The status after the last step.

        It holds ``iter``, the population's statistics (``popsize``, ``mean_eval``, ``median_eval``,
        ``pop_best``, ``pop_best_eval``, ``worst_eval``; NaN fitnesses are left out of them and counted
        in ``nan_count``), the best so far (``best``, ``best_eval``),
        the searcher's own entries (e.g. ``center``, ``stdev``) and the problem's (e.g.
        ``total_interaction_count``), plus whatever ``after_step_hook`` functions returned.
        """
        if self._status is None:
            self._status = self._compose_status()
        return self._status

    @property
    def _higher_is_better(self) -> bool:
        """Whether the problem maximises (larger fitnesses are better)."""
        return self.problem.objective_sense == "max"

    def _report(self, tensor: torch.Tensor) -> torch.Tensor:
        """Return a copy of an internal tensor in the problem's dtype, for the status."""
        return tensor.to(self.problem.dtype, copy=True)

    def _track_best(self) -> None:
        """Keep a copy of the population's best solution if it beats the best so far."""
        population = self.population
        i = population.argbest()
        if self._best is None or self.problem.is_better(float(population.evals[i, 0]), float(self._best.evals[0, 0])):
            self._best = population.take([i])

    def _compose_status(self) -> dict[str, Any]:
        """Build the status from the step count, the getters, the population, the best and the problem."""
        status: dict[str, Any] = {"iter": self.step_count}
        status.update({key: getter() for key, getter in self._status_getters.items()})
        population = self.population
        if population is not None:
            evals = population.evals[:, 0]
            nan = torch.isnan(evals)
            finite = evals[~nan] if bool(nan.any()) else evals  # NaN counts as worst, never as a number
            best = population.argbest()
            status.update(
                popsize=len(population),
                nan_count=int(nan.sum()),
                mean_eval=float(finite.mean()) if len(finite) else math.nan,
                median_eval=float(finite.median()) if len(finite) else math.nan,
                pop_best=population[best],  # a view: populations are replaced, never modified in place
                pop_best_eval=float(evals[best]),
                worst_eval=float(evals[population.argworst()]),
            )
        if self._best is not None:
            status.update(best=self._best[0], best_eval=self._best[0].evaluation)
        status.update(self.problem.status)
        return status

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Return everything needed to continue bit for bit, as tensors, numbers, strings and dicts.

        The problem's state (its evaluation-round counter seeds evaluations) is included under
        ``"problem"``.
        """
        state = {
            "algorithm": self.name,
            "solution_length": self.problem.solution_length,
            "step_count": self.step_count,
            "generator": self._generator.get_state(),
            "best": None if self._best is None else _batch_state(self._best),
            "search": self._search_state(),
            "problem": self.problem.state_dict(),
        }
        if self._carries_population:
            state["population"] = None if self.population is None else _batch_state(self.population)
        return state

    def _search_state(self) -> dict[str, Any]:
        """Copies of the attributes listed in :attr:`_state_attrs` (objects by their ``state_dict``)."""
        search = {}
        for attr in self._state_attrs:
            value = getattr(self, attr)
            if isinstance(value, torch.Tensor):
                search[attr] = value.clone()
            elif hasattr(value, "state_dict"):
                search[attr] = value.state_dict()
            else:
                search[attr] = value
        return search

    def _load_search_state(self, search: Mapping[str, Any]) -> None:
        """Restore what :meth:`_search_state` returned.

        Raises:
            ValueError: If a saved entry does not fit this searcher's attribute.
        """
        for attr in self._state_attrs:
            saved = search[attr]
            current = getattr(self, attr)
            if hasattr(current, "load_state_dict") != isinstance(saved, Mapping):
                raise ValueError(
                    f"The saved {attr!r} ({type(saved).__name__}) does not fit this {type(self).__name__}'s "
                    f"({type(current).__name__}); build the searcher with the saved run's settings."
                )
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(saved)
            else:
                setattr(self, attr, saved.clone() if isinstance(saved, torch.Tensor) else saved)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict` of the same algorithm on the same problem.

        Raises:
            ValueError: If the state belongs to another algorithm or another solution length, or
                lacks entries.
        """
        expected = {"algorithm", "solution_length", "step_count", "generator", "best", "search", "problem"}
        if self._carries_population:
            expected.add("population")
        missing = expected - set(state)
        if missing:
            raise ValueError(
                f"The state lacks the entries {sorted(missing)}; "
                f"pass a dict made by {type(self).__name__}.state_dict()."
            )
        if state["algorithm"] != self.name:
            raise ValueError(
                f"The state was saved by the {state['algorithm']!r} algorithm but is being loaded into "
                f"{type(self).__name__} ({self.name!r}); build the same algorithm as the one that saved it."
            )
        if int(state["solution_length"]) != self.problem.solution_length:
            raise ValueError(
                f"The state is for solutions of length {state['solution_length']} but this problem has "
                f"{self.problem.solution_length}; the network or problem differs from the saved run."
            )
        self.problem.load_state_dict(state["problem"])
        self.step_count = int(state["step_count"])
        self._generator.set_state(state["generator"].clone())
        self._best = None if state["best"] is None else _batch_from_state(self.problem, state["best"])
        self._load_search_state(state["search"])
        saved_population = state.get("population")
        self.population = None if saved_population is None else _batch_from_state(self.problem, saved_population)
        self._status = None
