"""Problems: the contract between searchers and evaluation.

A searcher asks a :class:`Problem` to evaluate a :class:`~hpcne.solution.SolutionBatch`. The
problem hands the parameter rows to its *runtime* (serial, a process pool, or MPI ranks; see
:mod:`hpcne.parallel`), which calls :meth:`Problem._evaluate_local` wherever the rows land and
merges the :class:`~hpcne.solution.EvalResult` pieces. Everything random inside an evaluation is
seeded from ``(problem seed, evaluation round, solution index)``, so fitnesses do not depend on
where a solution was evaluated.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from hpcne.seeding import derive_seed, fresh_seed
from hpcne.solution import EvalResult, Solution, SolutionBatch, annotate_solution
from hpcne.tools import as_numpy, numpy_dtype_of
from hpcne.watchdog import beat

if TYPE_CHECKING:
    from hpcne.parallel import Runtime
    from hpcne.sampling import GaussianSample

__all__ = ["STREAM_EVALUATION", "STREAM_PROBLEM", "STREAM_SEARCHER", "ObjectiveSense", "Problem"]

ObjectiveSense = Literal["min", "max"]

# Stream numbers for derive_seed(seed, stream, ...): keep the random streams of a run apart.
STREAM_PROBLEM = 0
STREAM_EVALUATION = 1
STREAM_SEARCHER = 2


def _check_sense(sense: Any) -> ObjectiveSense:
    if sense not in ("min", "max"):
        raise ValueError(
            f"objective_sense must be 'min' or 'max'; got {sense!r}. "
            "hpcne optimises a single objective (multi-objective lists are not supported)."
        )
    return sense


def _check_positive_int(name: str, value: Any, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int or None; got {value!r}.")
    return int(value)


def _check_num_actors(value: Any) -> int | str | None:
    if value is None or value == "max":
        return value
    if isinstance(value, str) and value in ("num_cpus", "num_devices", "num_gpus"):
        return "max" if value == "num_cpus" else value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"num_actors must be None, a non-negative int, or 'max'; got {value!r}.")
    return int(value)


class Problem:
    """A single-objective optimisation problem over real vectors, EvoTorch-style.

    Subclass and override :meth:`_evaluate` (one solution) or :meth:`_evaluate_batch`
    (a whole batch), or pass ``objective_func``.
    """

    def __init__(
        self,
        objective_sense: ObjectiveSense,
        objective_func: Callable[[torch.Tensor], Any] | None = None,
        *,
        initial_bounds: tuple[Any, Any] | None = None,
        bounds: tuple[Any, Any] | None = None,
        solution_length: int | None = None,
        dtype: torch.dtype | None = None,
        eval_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        num_actors: int | str | None = None,
        actor_config: dict | None = None,
        num_gpus_per_actor: float | str | None = None,
        num_subbatches: int | None = None,
        subbatch_size: int | None = None,
        vectorized: bool = False,
    ) -> None:
        """Create the problem.

        Args:
            objective_sense: ``"min"`` or ``"max"``.
            objective_func: Maps a solution's values (1-D tensor) to its fitness, or with
                ``vectorized=True`` a ``(n, d)`` tensor to ``n`` fitnesses.
            initial_bounds: ``(lower, upper)`` for drawing initial solutions (scalars or per-dim).
            bounds: Hard ``(lower, upper)`` bounds, used by searchers that clip (e.g. GA).
            solution_length: Number of decision values.
            dtype: Dtype of decision values (default float32).
            eval_dtype: Dtype of evaluations (default float64).
            device: Where solution tensors live (default cpu).
            seed: The run seed; all randomness derives from it. Drawn and recorded when None.
            num_actors: Parallel workers: None/0/1 in-process, an int or ``"max"`` for a local
                process pool; under an MPI launcher with several ranks, MPI is used.
            actor_config: Per-worker options, e.g. ``{"num_gpus": 1}`` or ``{"device": "cuda"}``.
            num_gpus_per_actor: Fraction of a GPU per worker, or ``"all"``/``"max"``.
            num_subbatches: Split each population into this many pieces handed out dynamically.
            subbatch_size: Split each population into pieces of this size handed out dynamically.
            vectorized: ``objective_func`` takes a whole ``(n, d)`` batch.
        """
        self.objective_sense: ObjectiveSense = _check_sense(objective_sense)
        self._objective_func = objective_func
        self._vectorized = bool(vectorized)
        if objective_func is not None and not callable(objective_func):
            raise TypeError(f"objective_func must be callable; got {type(objective_func).__name__}.")
        self.dtype = torch.float32 if dtype is None else dtype
        self.eval_dtype = torch.float64 if eval_dtype is None else eval_dtype
        self.device = torch.device("cpu" if device is None else device)
        self._solution_length = _check_positive_int("solution_length", solution_length)
        if self._solution_length is None and type(self).solution_length is Problem.solution_length:
            raise ValueError("solution_length must be given (a positive int).")
        self._bounds_args = {
            "initial_bounds": bounds if initial_bounds is None else initial_bounds,
            "bounds": bounds,
        }
        self._bounds_cache: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}
        if num_subbatches is not None and subbatch_size is not None:
            raise ValueError(
                "num_subbatches and subbatch_size cannot both be set; choose one "
                f"(got num_subbatches={num_subbatches!r}, subbatch_size={subbatch_size!r})."
            )
        self.num_subbatches = _check_positive_int("num_subbatches", num_subbatches)
        self.subbatch_size = _check_positive_int("subbatch_size", subbatch_size)
        self.num_actors = _check_num_actors(num_actors)
        if actor_config is not None and not isinstance(actor_config, dict):
            raise TypeError(f"actor_config must be a dict or None; got {type(actor_config).__name__}.")
        self.actor_config = dict(actor_config or {})
        gpus_ok = num_gpus_per_actor in (None, "all", "max") or (
            isinstance(num_gpus_per_actor, numbers.Real) and num_gpus_per_actor >= 0
        )
        if not gpus_ok:
            raise ValueError(
                f"num_gpus_per_actor must be a non-negative number, 'all' or 'max'; got {num_gpus_per_actor!r}."
            )
        self.num_gpus_per_actor = num_gpus_per_actor
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None; got {seed!r}.")
        self.seed: int = fresh_seed() if seed is None else int(seed)
        self._generator = torch.Generator().manual_seed(derive_seed(self.seed, STREAM_PROBLEM))
        self._active_generator = self._generator
        self._eval_position: tuple[int, int] | None = None  # (round, solution index) while evaluating
        self._eval_round = 0
        self.eval_seconds = 0.0  # wall time spent in evaluate(), for the results log
        self.comm_seconds = 0.0  # the part of it not spent evaluating on the busiest worker
        self._runtime: Runtime | None = None

    # ----------------------------------------------------------------- helpers
    @property
    def solution_length(self) -> int:
        """The number of decision values."""
        return self._solution_length  # type: ignore[return-value]

    def _bounds(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (lower, upper) tensors of ``initial_bounds`` or ``bounds``, built on first use."""
        if name not in self._bounds_cache:
            pair = self._bounds_args[name]
            if pair is None and name == "initial_bounds":
                pair = (-1.0, 1.0)
            self._bounds_cache[name] = None if pair is None else self._bounds_pair(name, pair)
        return self._bounds_cache[name]

    @property
    def initial_lower_bounds(self) -> torch.Tensor:
        """Lower end of the interval from which initial solutions are drawn."""
        return self._bounds("initial_bounds")[0]  # type: ignore[index]

    @property
    def initial_upper_bounds(self) -> torch.Tensor:
        """Upper end of the interval from which initial solutions are drawn."""
        return self._bounds("initial_bounds")[1]  # type: ignore[index]

    @property
    def lower_bounds(self) -> torch.Tensor | None:
        """Hard lower bounds (``bounds``), or None."""
        pair = self._bounds("bounds")
        return None if pair is None else pair[0]

    @property
    def upper_bounds(self) -> torch.Tensor | None:
        """Hard upper bounds (``bounds``), or None."""
        pair = self._bounds("bounds")
        return None if pair is None else pair[1]

    def _bounds_pair(self, name: str, pair: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a pair (lower, upper); got {pair!r}.") from None
        lo_t = torch.broadcast_to(torch.as_tensor(lo, dtype=self.dtype), (self.solution_length,)).clone()
        hi_t = torch.broadcast_to(torch.as_tensor(hi, dtype=self.dtype), (self.solution_length,)).clone()
        if bool((lo_t > hi_t).any()):
            raise ValueError(f"{name}: every lower bound must be <= its upper bound; got {pair!r}.")
        return lo_t, hi_t

    @property
    def sense_sign(self) -> float:
        """+1 for maximisation, -1 for minimisation: multiply fitnesses by it to maximise."""
        return 1.0 if self.objective_sense == "max" else -1.0

    def argbest(self, fitnesses: torch.Tensor) -> torch.Tensor:
        """Index of the best fitness (NaNs never win)."""
        f = torch.nan_to_num(fitnesses.double() * self.sense_sign, nan=-math.inf)
        return torch.argmax(f)

    def argworst(self, fitnesses: torch.Tensor) -> torch.Tensor:
        """Index of the worst fitness."""
        f = torch.nan_to_num(fitnesses.double() * self.sense_sign, nan=math.inf)
        return torch.argmin(f)

    def is_better(self, a: float, b: float) -> bool:
        """Whether fitness ``a`` is strictly better than ``b`` (anything beats NaN)."""
        if math.isnan(b):
            return not math.isnan(a)
        return (a > b) if self.objective_sense == "max" else (a < b)

    # ---------------------------------------------------------- random numbers
    @property
    def generator(self) -> torch.Generator:
        """The generator in use: per solution during an evaluation, the problem's otherwise."""
        return self._active_generator

    def _sample_size(
        self, size: tuple[Any, ...], num_solutions: int | None, out: torch.Tensor | None
    ) -> tuple[int, ...]:
        """The shape to sample: ``size``, ``(num_solutions, solution_length)`` or the shape of ``out``."""
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        if num_solutions is not None:
            if size:
                raise ValueError("Give either a size or num_solutions, not both.")
            return (int(num_solutions), self.solution_length)
        if not size:
            if out is None:
                raise ValueError("Say what to sample: a size, num_solutions=n, or out=tensor.")
            return tuple(out.shape)
        return tuple(int(n) for n in size)

    def make_gaussian(
        self,
        *size: int,
        num_solutions: int | None = None,
        out: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        center: float | torch.Tensor | None = None,
        stdev: float | torch.Tensor | None = None,
        symmetric: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a Gaussian tensor (optionally ``center + stdev * z``; ``symmetric`` pairs ±z rows).

        The shape is ``size``, or ``(num_solutions, solution_length)``, or that of ``out`` (which
        is then filled). Inside an evaluation the numbers come from the solution's own generator.
        """
        size = self._sample_size(size, num_solutions, out)
        gen = generator or self._active_generator
        dtype = dtype or (out.dtype if out is not None else self.dtype)
        if symmetric:
            if size[0] % 2:
                raise ValueError(f"A symmetric sample needs an even number of rows; got {size[0]}.")
            half = torch.randn((size[0] // 2, *size[1:]), generator=gen, dtype=dtype)
            z = torch.stack([half, -half], dim=1).reshape(size)
        else:
            z = torch.randn(size, generator=gen, dtype=dtype)
        if stdev is not None:
            z = z * torch.as_tensor(stdev, dtype=dtype)
        if center is not None:
            z = z + torch.as_tensor(center, dtype=dtype)
        if out is not None:
            return out.copy_(z)
        return z.to(device or self.device)

    def make_uniform(
        self,
        *size: int,
        num_solutions: int | None = None,
        out: torch.Tensor | None = None,
        lb: float | torch.Tensor | None = None,
        ub: float | torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a uniform tensor in ``[lb, ub)`` (default ``[0, 1)``); shapes as in :meth:`make_gaussian`."""
        size = self._sample_size(size, num_solutions, out)
        dtype = dtype or (out.dtype if out is not None else self.dtype)
        u = torch.rand(size, generator=generator or self._active_generator, dtype=dtype)
        lb_t = torch.as_tensor(0.0 if lb is None else lb, dtype=dtype)
        ub_t = torch.as_tensor(1.0 if ub is None else ub, dtype=dtype)
        u = lb_t + u * (ub_t - lb_t)
        if out is not None:
            return out.copy_(u)
        return u.to(device or self.device)

    def make_zeros(
        self, *size: int, num_solutions: int | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """A tensor of zeros on the problem's device (shape as in :meth:`make_gaussian`)."""
        return torch.zeros(self._sample_size(size, num_solutions, None), dtype=dtype or self.dtype, device=self.device)

    def make_ones(self, *size: int, num_solutions: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor of ones on the problem's device (shape as in :meth:`make_gaussian`)."""
        return torch.ones(self._sample_size(size, num_solutions, None), dtype=dtype or self.dtype, device=self.device)

    def make_tensor(self, data: Any, *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``data`` as a tensor of the problem's dtype on its device."""
        return torch.as_tensor(data, dtype=dtype or self.dtype, device=self.device)

    def generate_values(self, n: int) -> torch.Tensor:
        """Draw ``n`` solutions uniformly within the initial bounds."""
        return self.make_uniform(n, self.solution_length, lb=self.initial_lower_bounds, ub=self.initial_upper_bounds)

    def generate_batch(self, popsize: int) -> SolutionBatch:
        """Return a new batch of ``popsize`` solutions drawn within the initial bounds."""
        return SolutionBatch(self, popsize)

    # -------------------------------------------------------------- evaluation
    @property
    def runtime(self) -> Runtime:
        """The evaluation runtime (serial, pool or MPI), created on first use."""
        if self._runtime is None:
            from hpcne.parallel import make_runtime  # the one plug point of the parallel layer

            self._runtime = make_runtime(self)
        return self._runtime

    @property
    def wire_dtype(self) -> np.dtype:
        """The numpy dtype in which solution values travel to workers."""
        return numpy_dtype_of(self.dtype)

    def evaluate(self, batch: SolutionBatch) -> None:
        """Evaluate every solution of ``batch`` and store the fitnesses in it."""
        if len(batch) == 0:
            return
        batch.set_evals(self.evaluate_values(batch.values))

    def evaluate_values(self, values: torch.Tensor | np.ndarray) -> np.ndarray:
        """Evaluate the rows of ``values`` through the runtime; return float64 fitnesses."""
        array = np.ascontiguousarray(as_numpy(values, self.wire_dtype))
        return self._evaluate_round(lambda runtime: runtime.evaluate(array, self._eval_round))

    def evaluate_sampled(self, sample: GaussianSample, popsize: int) -> np.ndarray:
        """Evaluate ``popsize`` rows of ``sample`` where they are generated (distributed mode).

        Every process generates the rows it evaluates from their indices; only fitnesses travel.
        ``sample.stream.eval_round`` must be this problem's next evaluation round.
        """
        if sample.stream.eval_round != self._eval_round or sample.stream.seed != self.seed:
            raise ValueError(
                f"The sample is keyed to seed {sample.stream.seed}, round {sample.stream.eval_round}, but the "
                f"problem's next evaluation is seed {self.seed}, round {self._eval_round}."
            )
        return self._evaluate_round(lambda runtime: runtime.evaluate_sampled(sample, popsize))

    def _evaluate_round(self, evaluate: Callable[[Runtime], EvalResult]) -> np.ndarray:
        """Run one evaluation round through the runtime; book its time, counters and side effects."""
        started = time.perf_counter()
        result = evaluate(self.runtime)
        seconds = time.perf_counter() - started
        self.eval_seconds += seconds
        self.comm_seconds += max(0.0, seconds - self.runtime.compute_seconds)
        self._eval_round += 1
        self._apply_eval_result(result)
        return result.fitness

    def _evaluate_local(self, values: np.ndarray, first_index: int, eval_round: int) -> EvalResult:
        """Evaluate rows of ``values`` as solutions ``first_index, first_index+1, ...`` of a round.

        This runs wherever the runtime sends the rows. It must not change state that other
        rows could observe (see GymNE's frozen observation statistics); side effects are
        returned in the :class:`EvalResult` and merged by :meth:`_apply_eval_result`.
        """
        batch = SolutionBatch(self, values=torch.from_numpy(values))
        if self._vectorized or type(self)._evaluate_batch is not Problem._evaluate_batch:
            self._active_generator = self._solution_generator(eval_round, first_index)
            beat()
            try:
                self._evaluate_batch(batch)
            finally:
                self._active_generator = self._generator
        else:
            for i, solution in enumerate(batch):
                self._eval_position = (eval_round, first_index + i)
                self._active_generator = self._solution_generator(*self._eval_position)
                beat()
                try:
                    self._evaluate(solution)
                except Exception as err:
                    annotate_solution(err, first_index + i)
                    raise
                finally:
                    self._active_generator = self._generator
                    self._eval_position = None
        fitness = batch.evals[:, 0].to(torch.float64).numpy().copy()
        if np.isnan(fitness).any():
            bad = int(np.flatnonzero(np.isnan(fitness))[0]) + first_index
            raise ValueError(f"Solution {bad} was given no fitness (NaN): _evaluate must set one.")
        return EvalResult(fitness)

    def _solution_generator(self, eval_round: int, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.seed, STREAM_EVALUATION, eval_round, index))

    def _evaluate(self, solution: Solution) -> None:
        """Evaluate one solution; the default calls ``objective_func`` on its values."""
        if self._objective_func is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no objective_func; pass one or override _evaluate/_evaluate_batch."
            )
        solution.set_evaluation(float(self._objective_func(solution.values)))

    def _evaluate_batch(self, batch: SolutionBatch) -> None:
        """Evaluate a whole batch; the default applies a vectorized ``objective_func``."""
        if self._objective_func is None:
            raise NotImplementedError(f"{type(self).__name__} has no objective_func.")
        batch.set_evals(torch.as_tensor(self._objective_func(batch.values)).reshape(-1))

    def _apply_eval_result(self, result: EvalResult) -> None:
        """Merge the side effects of a finished evaluation round (counters, statistics)."""

    def _sync_buffer(self) -> np.ndarray:
        """Frozen state that workers need for the next round (e.g. observation statistics)."""
        return np.empty(0)

    def _load_sync_buffer(self, buffer: np.ndarray) -> None:
        """Install the state produced by :meth:`_sync_buffer` on a worker."""

    # --------------------------------------------------------------- lifecycle
    def _reseed(self) -> None:
        """Restart the problem's generator from :attr:`seed` (after the ranks agreed on it)."""
        self._generator.manual_seed(derive_seed(self.seed, STREAM_PROBLEM))

    def _on_worker_start(self) -> None:
        """Called in a freshly started pool worker: drop what must not be shared with the parent."""

    def _use_device(self, device: torch.device) -> None:
        """Called by the runtime with the device this process should evaluate on."""

    def kill_actors(self) -> None:
        """Stop the parallel workers, if any (they restart on the next evaluation)."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    close = kill_actors

    @property
    def is_main(self) -> bool:
        """Whether this process drives the search (always, except on MPI worker ranks)."""
        return self._runtime is None or self._runtime.is_main

    # ------------------------------------------------------------ status/state
    def _extra_status(self, batch: SolutionBatch | None = None) -> dict[str, Any]:
        """Problem-specific entries for the searcher's status."""
        return {}

    @property
    def status(self) -> dict[str, Any]:
        """Problem-level status entries (e.g. interaction counts)."""
        return self._extra_status()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: seed, round counter, generator state."""
        return {
            "seed": self.seed,
            "eval_round": self._eval_round,
            "generator": self._generator.get_state(),
            "solution_length": self.solution_length,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if int(state["solution_length"]) != self.solution_length:
            raise ValueError(
                f"The saved problem has {state['solution_length']} parameters but this one has "
                f"{self.solution_length}; the network or environment differs."
            )
        self.seed = int(state["seed"])
        self._eval_round = int(state["eval_round"])
        self._generator.set_state(state["generator"])
