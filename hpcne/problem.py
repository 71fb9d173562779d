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

from hpcne import timing
from hpcne.seeding import derive_seed, fresh_seed
from hpcne.solution import EvalResult, Solution, SolutionBatch, annotate_solution
from hpcne.tools import as_numpy, numpy_dtype_of
from hpcne.tools.dtypes import to_torch_dtype
from hpcne.tools.hook import Hook
from hpcne.tools.tensormaker import TensorMakerMixin
from hpcne.watchdog import beat

if TYPE_CHECKING:
    from hpcne.parallel import Runtime
    from hpcne.sampling import GaussianSample, Replica
    from hpcne.tools.dtypes import DType

__all__ = ["STREAM_EVALUATION", "STREAM_PROBLEM", "STREAM_SEARCHER", "ObjectiveSense", "Problem"]

ObjectiveSense = Literal["min", "max"]

# Stream numbers for derive_seed(seed, stream, ...): keep the random streams of a run apart.
STREAM_PROBLEM = 0
STREAM_EVALUATION = 1
STREAM_SEARCHER = 2


def _check_sense(sense: Any) -> ObjectiveSense:
    if isinstance(sense, (list, tuple)) and len(sense) == 1:
        sense = sense[0]  # EvoTorch's one-objective list form
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


def _check_dtype(name: str, dtype: Any, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    try:
        return to_torch_dtype(dtype)
    except TypeError as err:
        raise ValueError(f"{name}: {err} Use a numeric dtype such as 'float32', 'int64' or torch.bool.") from None


def _check_num_actors(value: Any) -> int | str | None:
    if value is None or value == "max":
        return value
    if isinstance(value, str) and value in ("num_cpus", "num_devices", "num_gpus"):
        return "max" if value == "num_cpus" else value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"num_actors must be None, a non-negative int, or 'max'; got {value!r}.")
    return int(value)


class Problem(TensorMakerMixin):
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
        dtype: DType | None = None,
        eval_dtype: DType | None = None,
        eval_data_length: int | None = None,
        store_solution_stats: bool | None = None,
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
            dtype: Dtype of decision values (default float32): a torch or numpy dtype or its name.
                Integer and boolean dtypes suit the genetic algorithm's operators.
            eval_dtype: Dtype of evaluations (default float64).
            eval_data_length: Extra evaluation columns per solution, after the fitness
                (``batch.evals[:, 1:]``); kept when evaluating in this process.
            store_solution_stats: Keep the best and worst solutions ever evaluated and report
                them in :attr:`status` (``best``, ``worst``, ``best_eval``, ``worst_eval``).
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
        self.dtype = _check_dtype("dtype", dtype, torch.float32)
        self.eval_dtype = _check_dtype("eval_dtype", eval_dtype, torch.float64)
        self.eval_data_length = _check_positive_int("eval_data_length", eval_data_length or None) or 0
        self.store_solution_stats = bool(store_solution_stats)
        self._solution_stats: dict[str, Solution] = {}
        self.before_eval_hook = Hook()  # called with each batch before evaluating it
        self.after_eval_hook = Hook()  # called with each evaluated batch; dicts it returns join the status
        self._after_eval_status: dict[str, Any] = {}
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
        self._replica: Replica | None = None  # the distributed searcher, which every MPI rank holds

    # ----------------------------------------------------------------- helpers
    @property
    def solution_length(self) -> int:
        """The number of decision values."""
        return self._solution_length  # type: ignore[return-value]

    def _bounds(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (lower, upper) tensors of ``initial_bounds`` or ``bounds``, built on first use."""
        if name not in self._bounds_cache:
            pair = self._bounds_args[name]
            self._bounds_cache[name] = None if pair is None else self._bounds_pair(name, pair)
        return self._bounds_cache[name]

    @property
    def initial_lower_bounds(self) -> torch.Tensor | None:
        """Lower end of the interval from which initial solutions are drawn, or None."""
        pair = self._bounds("initial_bounds")
        return None if pair is None else pair[0]

    @property
    def initial_upper_bounds(self) -> torch.Tensor | None:
        """Upper end of the interval from which initial solutions are drawn, or None."""
        pair = self._bounds("initial_bounds")
        return None if pair is None else pair[1]

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
        finite = torch.isfinite if name == "initial_bounds" else lambda t: ~torch.isnan(t)  # bounds may be inf
        if not bool(finite(lo_t).all() and finite(hi_t).all()):
            kind = "finite numbers" if name == "initial_bounds" else "numbers (±inf: unbounded)"
            raise ValueError(f"{name} must be {kind}; got {pair!r}.")
        if bool((lo_t > hi_t).any()):
            raise ValueError(f"{name}: every lower bound must be <= its upper bound; got {pair!r}.")
        return lo_t, hi_t

    @property
    def senses(self) -> list[ObjectiveSense]:
        """The objective senses, one per objective (EvoTorch's form; hpcne has one objective)."""
        return [self.objective_sense]

    @property
    def is_multi_objective(self) -> bool:
        """Always False: hpcne problems have a single objective."""
        return False

    def ensure_numeric(self) -> None:
        """Nothing to check: hpcne problems always have numeric dtypes (EvoTorch's check for searchers)."""

    def ensure_single_objective(self) -> None:
        """Nothing to check: hpcne problems always have one objective (EvoTorch's check for searchers)."""

    def ensure_unbounded(self) -> None:
        """Raise ValueError if the problem has hard ``bounds`` (for searchers that cannot respect them)."""
        if self._bounds_args["bounds"] is not None:
            raise ValueError(
                "This searcher does not respect hard bounds, but the problem has "
                f"bounds={self._bounds_args['bounds']!r}. "
                "Give initial_bounds instead, or use a searcher that clips (GeneticAlgorithm)."
            )

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

    def generate_values(self, n: int) -> torch.Tensor:
        """Return ``n`` new solutions' values, filled by :meth:`_fill`."""
        values = torch.empty(int(n), self.solution_length, dtype=self.dtype, device=self.device)
        self._fill(values)
        return values

    def _fill(self, values: torch.Tensor) -> None:
        """Fill new solutions' values in place: uniformly within the initial bounds.

        Integer dtypes draw integers from ``lower..upper`` inclusive; ``torch.bool`` draws coin
        flips. Override to initialise solutions differently.

        Raises:
            RuntimeError: If the problem has neither ``initial_bounds`` nor ``bounds``.
        """
        lower, upper = self.initial_lower_bounds, self.initial_upper_bounds
        if lower is None or upper is None:
            raise RuntimeError(
                f"{type(self).__name__} cannot make new solutions: it has no initial_bounds (nor bounds). "
                "Pass initial_bounds=(lower, upper), or override _fill(values) to fill them yourself."
            )
        if self.dtype == torch.bool:
            values.copy_(torch.rand(values.shape, generator=self._active_generator) < 0.5)
        elif not self.dtype.is_floating_point:
            u = torch.rand(values.shape, generator=self._active_generator, dtype=torch.float64)
            lo, hi = lower.double(), upper.double()
            values.copy_(torch.floor(lo + u * (hi - lo + 1)).clamp(max=hi))
        else:
            self.make_uniform(out=values, lb=lower, ub=upper)

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
        """Evaluate every solution of ``batch`` and store the fitnesses (and eval data) in it.

        :attr:`before_eval_hook` is called with the batch first, :attr:`after_eval_hook` with
        the evaluated batch afterwards; a dict it returns is merged into :attr:`status`.
        """
        self.before_eval_hook(batch)
        if len(batch):
            result = self._evaluate_rows(batch.values)
            batch.set_evals(result.fitness, result.eval_data)
            if self.store_solution_stats:
                self._update_solution_stats(batch)
        self._after_eval_status = dict(self.after_eval_hook(batch) or {})

    def _update_solution_stats(self, batch: SolutionBatch) -> None:
        """Keep copies of the best and worst solutions evaluated so far."""
        best, worst = batch[batch.argbest()], batch[batch.argworst()]
        kept = self._solution_stats
        if "best" not in kept or self.is_better(best.evaluation, kept["best"].evaluation):
            kept["best"] = best.clone()
        if "worst" not in kept or self.is_better(kept["worst"].evaluation, worst.evaluation):
            kept["worst"] = worst.clone()

    def evaluate_values(self, values: torch.Tensor | np.ndarray) -> np.ndarray:
        """Evaluate the rows of ``values`` through the runtime; return float64 fitnesses."""
        return self._evaluate_rows(values).fitness

    def _evaluate_rows(self, values: torch.Tensor | np.ndarray) -> EvalResult:
        """Evaluate the rows of ``values`` through the runtime and merge the side effects."""
        array = np.ascontiguousarray(as_numpy(values, self.wire_dtype))
        return self._evaluate_round(lambda runtime: runtime.evaluate(array, self._eval_round))

    def evaluate_sampled(self, sample: GaussianSample, popsize: int, *, replica: Replica | None = None) -> np.ndarray:
        """Evaluate ``popsize`` rows of ``sample`` where they are generated (distributed mode).

        Every process generates the rows it evaluates from their indices; only fitnesses travel.
        ``sample.stream.eval_round`` must be this problem's next evaluation round. With ``replica``
        (the searcher that drew ``sample``, held by every process), MPI worker ranks draw the sample
        from their own copy; without it, the sample's centre and stdev are sent to them.
        """
        if sample.stream.eval_round != self._eval_round or sample.stream.seed != self.seed:
            raise ValueError(
                f"The sample is keyed to seed {sample.stream.seed}, round {sample.stream.eval_round}, but the "
                f"problem's next evaluation is seed {self.seed}, round {self._eval_round}."
            )
        return self._evaluate_round(lambda runtime: runtime.evaluate_sampled(sample, popsize, replica)).fitness

    def _evaluate_round(self, evaluate: Callable[[Runtime], EvalResult]) -> EvalResult:
        """Run one evaluation round through the runtime; book its time, counters and side effects."""
        started = time.perf_counter()
        with timing.block("communication"):  # what this process's rollouts inside leave over
            result = evaluate(self.runtime)
        seconds = time.perf_counter() - started
        self.eval_seconds += seconds
        self.comm_seconds += max(0.0, seconds - self.runtime.compute_seconds)
        self._eval_round += 1
        self._apply_eval_result(result)
        if self.eval_data_length and result.eval_data is None:
            raise RuntimeError(
                f"eval_data_length={self.eval_data_length} needs evaluation in this process, but the "
                f"{self.runtime.describe()} runtime moves fitnesses only. Use num_actors=None without an MPI launcher."
            )
        return result

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
                except BaseException as err:  # SystemExit and KeyboardInterrupt too: reported with the solution
                    annotate_solution(err, first_index + i)
                    raise
                finally:
                    self._active_generator = self._generator
                    self._eval_position = None
        fitness = batch.evals[:, 0].to(torch.float64).numpy().copy()
        if np.isnan(fitness).any():
            bad = int(np.flatnonzero(np.isnan(fitness))[0]) + first_index
            raise ValueError(f"Solution {bad} was given no fitness (NaN): _evaluate must set one.")
        eval_data = batch.evals[:, 1:].to(torch.float64).numpy().copy() if self.eval_data_length else None
        return EvalResult(fitness, eval_data=eval_data)

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
        """Problem-level status entries (e.g. interaction counts), the solution stats and the after-eval hook's."""
        status = self._extra_status()
        for key, solution in self._solution_stats.items():
            status[key] = solution
            status[f"{key}_eval"] = solution.evaluation
        status.update(self._after_eval_status)
        return status

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
