"""The training loop: ask → evaluate → tell → log → checkpoint, with signals and exact restart."""

from __future__ import annotations

import inspect
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import gymnasium
import h5py
import numpy as np
import torch

import hpcne
from hpcne import timing
from hpcne.algorithms import ALGORITHMS, SearchAlgorithm
from hpcne.config import ConfigError, RunConfig, config_differences
from hpcne.hints import did_you_mean
from hpcne.io.checkpoint import Checkpoint, CheckpointManager
from hpcne.io.lock import RunDirLock, RunDirLocked
from hpcne.io.results import RESULT_COLUMNS, RESULTS_FILENAME, ResultsWriter
from hpcne.io.validate import DamagedFileError
from hpcne.neuroevolution import GymNE, VecGymNE
from hpcne.parallel import signals
from hpcne.progress import Progress
from hpcne.trackers import RunTrackers

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "EXIT_USAGE",
    "RunError",
    "Trainer",
    "build_problem",
    "build_searcher",
    "versions",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed after a stop signal; run the same command again to resume
# Center evaluations use rounds far from the training rounds so that they never change training.
CENTER_ROUND_BASE = 2**40
RESULTS_FLUSH_SECONDS = 1.0  # log rows are written about once a second (a write costs ms), and at each checkpoint


class RunError(RuntimeError):
    """The run cannot go on for a reason outside the configuration; the message says what to do."""


def versions() -> dict[str, str]:
    """Versions of hpcne and the libraries that shape results."""
    return {
        "hpcne": hpcne.__version__,
        "torch": str(torch.__version__),
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def build_problem(config: RunConfig) -> GymNE:
    """The GymNE (or, with ``vectorized``, VecGymNE) problem a config describes."""
    if config.vectorized:
        return VecGymNE(
            config.env,
            config.network,
            max_num_envs=config.max_num_envs,
            schedule=config.vector_schedule,
            **_problem_options(config),
        )
    return GymNE(
        config.env,
        config.network,
        rollout_batch_size=config.rollout_batch_size,
        **_problem_options(config),
    )


def _problem_options(config: RunConfig) -> dict[str, Any]:
    """The keyword arguments that GymNE and VecGymNE share."""
    return dict(
        env_config=config.env_config,
        observation_normalization=config.observation_normalization,
        num_episodes=config.num_episodes,
        episode_length=config.episode_length,
        decrease_rewards_by=config.decrease_rewards_by,
        alive_bonus_schedule=tuple(config.alive_bonus_schedule) if config.alive_bonus_schedule else None,
        action_noise_stdev=config.action_noise_stdev,
        num_actors=config.workers,
        num_subbatches=config.num_subbatches,
        subbatch_size=config.subbatch_size,
        seed=config.seed,
        policy_backend=config.policy_backend,
        num_gpus_per_actor=1 if config.device == "cuda" else None,  # mapped per worker by node-local rank
    )


def build_searcher(config: RunConfig, problem: GymNE) -> SearchAlgorithm:
    """The searcher a config describes, with a clear error for bad options."""
    cls = ALGORITHMS[config.algo]
    options = config.searcher_options()
    parameters = inspect.signature(cls).parameters
    known = [name for name in parameters if name != "problem"]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key in options:
        if key not in known and not open_ended:
            raise ConfigError(f"Unknown option {key!r} for algo {config.algo!r}.{did_you_mean(key, known)}")
    _check_population_memory(options.get("popsize"), problem.solution_length)
    try:
        return cls(problem, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Bad options for algo {config.algo!r}: {err}") from err


def _check_population_memory(popsize: Any, length: int) -> None:
    """Refuse a population that could not fit in this machine's memory, before anything is allocated."""
    if not isinstance(popsize, int) or isinstance(popsize, bool):
        return
    needed = popsize * length * 8 * 2  # float64 values, and as much again for noise or sorting
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else None
    if memory and needed > memory:
        raise ConfigError(
            f"popsize {popsize} × {length} parameters needs about {needed / 2**30:.1f} GiB per generation, more "
            f"than this machine's {memory / 2**30:.1f} GiB of memory; use a smaller popsize or network."
        )


class Trainer:
    """Runs one training run on the main process and owns its files (rank 0 only under MPI)."""

    def __init__(
        self,
        config: RunConfig,
        problem: GymNE,
        run_dir: Path,
        *,
        out: TextIO | None = None,
        searcher: SearchAlgorithm | None = None,
    ) -> None:
        """Prepare the run directory, resuming from its newest valid checkpoint if there is one.

        ``searcher`` is the one ``build_searcher(config, problem)`` makes, built already (the command
        line builds it before the workers start, so that a bad option leaves nothing behind).

        Raises:
            ConfigError: The run directory holds a run whose problem differs from ``config``.
            RunError: Another process is training in the run directory (its host and pid are named).
        """
        self.config, self.problem, self.run_dir = config, problem, run_dir
        self.out = sys.stdout if out is None else out  # looked up now: sys.stdout may have been redirected
        run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = RunDirLock(run_dir)  # released at the end of run(), or when this process ends
        try:
            self._lock.acquire()
        except RunDirLocked as err:
            raise RunError(str(err)) from None
        self.checkpoints = CheckpointManager(run_dir / "checkpoints", keep=config.keep_checkpoints)
        checkpoint = self.checkpoints.load_latest()
        if checkpoint is not None:
            saved = RunConfig.from_json(checkpoint.attrs["config"])
            differences = config_differences(saved, config)
            if differences:
                raise ConfigError(
                    f"{run_dir} holds a run with a different problem, so it cannot be resumed with this "
                    "configuration:\n  " + "\n  ".join(differences) + "\nUse another --run-dir for a new run."
                )
        self.searcher = searcher if searcher is not None else build_searcher(config, problem)
        self.generation, self._elapsed_before = 0, 0.0
        if checkpoint is not None:
            self._restore(checkpoint)
        attrs = {"config": config.to_json(), "env": config.env, **{f"version_{k}": v for k, v in versions().items()}}
        if getattr(self.searcher, "noise_table", None) is not None:  # it decides the populations (HPCNE_NOISE_TABLE)
            attrs["noise_table"] = self.searcher.noise_table  # type: ignore[attr-defined]
        results_path = run_dir / RESULTS_FILENAME
        if checkpoint is None and results_path.exists():
            # Left by a run that stopped before its first checkpoint: nothing in it can be resumed, and it
            # may even be another configuration's, so start it afresh.
            results_path.unlink()
        self.results = _open_results(
            results_path,
            attrs=attrs,
            best_length=problem.solution_length,
            obs_length=problem._obs_length if problem.observation_normalization else None,
        )
        self.results.truncate(self.generation)
        logged = self.results.last_generation
        if logged < self.generation:
            _warn(
                f"{results_path} logs {f'generations up to {logged}' if logged else 'no generation'}, but the run "
                f"resumes from generation {self.generation}: the log goes on from generation {self.generation + 1}, "
                f"without generations {logged + 1}-{self.generation} (a results file deleted, damaged or written "
                "by another run)."
            )
        self._best_logged = math.nan if checkpoint is None else float(checkpoint.state["trainer"]["best_logged"])
        self._nan_count = 0 if checkpoint is None else int(checkpoint.state["trainer"].get("nan_count", 0))
        self._best_record: dict[str, Any] = {} if checkpoint is None else checkpoint.state["trainer"].get("best", {})
        if self._best_record:  # a best found after the checkpoint was discarded with its generations
            self.results.update_best(**self._best_record)
        self.resumed_from = checkpoint

    def _restore(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.state
        try:  # a valid checkpoint that this process cannot continue: not a damaged file, so no fallback
            self.searcher.load_state_dict(state["searcher"])
        except ValueError as err:
            raise ConfigError(f"{checkpoint.path} cannot be resumed here: {err}") from None
        self.generation = int(state["trainer"]["generation"])
        self._elapsed_before = float(state["trainer"]["elapsed"])

    # ------------------------------------------------------------------ loop
    def run(self) -> int:
        """Train until a stop condition; return the process exit status (see EXIT_*)."""
        cfg = self.config
        if self.resumed_from is not None:
            self._say(
                f"hpcne: resuming {self.run_dir} from generation {self.generation} ({self.resumed_from.path.name})"
            )
            changed = [
                f"{name} {self.resumed_from.attrs[f'version_{name}']} -> {version}"
                for name, version in versions().items()
                if self.resumed_from.attrs.get(f"version_{name}", version) != version
            ]
            if changed:
                print(
                    f"hpcne: warning: the checkpoint was written with other versions ({', '.join(changed)}); "
                    "the run goes on, but may no longer be bit-identical to an uninterrupted one.",
                    file=sys.stderr,
                    flush=True,
                )
        try:  # before the clocks start: opening a tracker takes a second or two
            trackers = RunTrackers(cfg, self.run_dir, generation=self.generation)
        except BaseException:
            self.results.close()
            raise
        started = time.monotonic()
        has_center = self.searcher.status.get("center") is not None
        progress = Progress(self.out, cfg, self.generation, self.problem.interaction_count, has_center=has_center)
        stop_reason = self._stop_reason(None)
        finished = False
        try:
            while stop_reason is None:
                timing.set_key(self.problem._eval_round, role="coordinator")
                before = self.problem.eval_seconds, self.problem.comm_seconds, time.perf_counter()
                with timing.block("searcher update"):  # what the evaluation round inside leaves over
                    self.searcher.step()
                step_time = time.perf_counter() - before[2]
                self.generation += 1
                self._check_nan()
                elapsed = self._elapsed_before + time.monotonic() - started
                eval_time, comm_time = self.problem.eval_seconds - before[0], self.problem.comm_seconds - before[1]
                with timing.block("logging"):
                    row = self._row(elapsed, eval_time, comm_time, step_time - eval_time)
                    self.results.append(row)
                    trackers.log(row)
                    self._log_best(row)
                    progress.update(row)
                    stop_reason = self._stop_reason(row)
                preempted = signals.stop_requested() or self.problem.runtime.stop_requested
                if preempted or stop_reason or self.generation % cfg.checkpoint_every == 0:
                    with timing.block("checkpoint"):
                        self._checkpoint(elapsed)
                timing.dump()
                if preempted:
                    signals.settle()  # written: another Ctrl-C must not turn "resume me" (75) into 130
                if preempted and stop_reason is None:  # a run that just finished ends normally
                    how = signals.stop_signal() or "a stop request on another rank"
                    progress.close()
                    self._say(
                        f"hpcne: stopped by {how} after generation {self.generation}; checkpoint written. "
                        f"Run the same command (or `hpcne resume {self.run_dir}`) to continue. "
                        f"Exit status {EXIT_PREEMPTED}."
                    )
                    return EXIT_PREEMPTED
            finished = True
        finally:
            progress.close()
            self.results.close()
            if not finished:
                trackers.close()
                self._lock.release()
        try:
            tracked = trackers.finish(self._write_best() if cfg.track else None)
        finally:
            self._lock.release()  # best.h5 is written under the lock too
        self._summary(stop_reason, tracked)
        return EXIT_OK

    def _check_nan(self) -> None:
        """Count the generation's NaN fitnesses: warn the first time, or end the run (``nan_policy``)."""
        count = int(self.searcher.status.get("nan_count", 0))
        if not count:
            return
        what = (
            f"generation {self.generation}: {count} of {self.searcher.status['popsize']} solutions have a NaN "
            "fitness (a NaN reward or a diverged simulation?)"
        )
        if self.config.nan_policy == "error":
            last = self.checkpoints.list()
            raise RunError(
                f"{what}; nan_policy 'error' ends the run here, before this generation is checkpointed "
                f"({last[-1].name if last else 'no checkpoint yet'} is the newest). Fix the environment, or run "
                "with --nan-policy worst to rank such solutions below every other one."
            )
        if not self._nan_count:
            _warn(
                f"{what}; they are ranked worst and left out of the logged mean and median "
                "(--nan-policy error stops instead). The total is in the final summary."
            )
        self._nan_count += count

    def _row(self, elapsed: float, eval_time: float, comm_time: float, update_time: float) -> dict[str, float | int]:
        status = self.searcher.status
        stdev = status.get("stdev")
        center_eval = math.nan
        every = self.config.eval_center_every
        if every and self.generation % every == 0 and status.get("center") is not None:
            center_eval = self.center_eval(status["center"])
        return {
            "generation": self.generation,
            "mean_eval": status["mean_eval"],
            "median_eval": status["median_eval"],
            "best_eval": status["best_eval"],
            "pop_best_eval": status["pop_best_eval"],
            "worst_eval": status["worst_eval"],
            "center_eval": center_eval,
            "popsize": status["popsize"],
            "interaction_count": self.problem.interaction_count,
            "episode_count": self.problem.episode_count,
            "wall_time": elapsed,
            "eval_time": eval_time,
            "comm_time": comm_time,
            "update_time": update_time,
            "stdev_norm": float(torch.linalg.vector_norm(stdev.double())) if stdev is not None else math.nan,
        }

    def center_eval(self, center: torch.Tensor) -> float:
        """Score the center policy (or another solution) here, over ``center_episodes``, without touching
        training's seeds, counters or statistics."""
        problem = self.problem
        values = center.detach().cpu().numpy().astype(problem.wire_dtype)[None]
        with timing.block("centre evaluation", absorb=True):
            fitness = problem._evaluate_aside(values, CENTER_ROUND_BASE + self.generation, self.config.center_episodes)
        return float(fitness[0])

    def _log_best(self, row: dict[str, Any]) -> None:
        if not math.isnan(self._best_logged) and row["best_eval"] <= self._best_logged:
            return
        self._best_logged = row["best_eval"]
        record = {
            "values": self.searcher.status["best"].values.detach().cpu().numpy(),
            "eval": row["best_eval"],
            "generation": self.generation,
        }
        stats = self.problem._obs_stats
        if stats is not None:
            record |= {"obs_mean": stats.mean, "obs_stdev": stats.stdev, "obs_count": stats.count}
        self._best_record = record  # also in each checkpoint, so that a resume can restore /best
        self.results.update_best(**record)

    def _stop_reason(self, row: dict[str, Any] | None) -> str | None:
        cfg = self.config
        if cfg.generations is not None and self.generation >= cfg.generations:
            return f"reached {cfg.generations} generations"
        if row is None:
            return None
        if cfg.max_interactions is not None and row["interaction_count"] >= cfg.max_interactions:
            return f"used the budget of {cfg.max_interactions} interactions"
        if cfg.target_reward is not None:
            if not math.isnan(row["center_eval"]):
                score, judged = row["center_eval"], f"the center's mean return over {_episodes(cfg.center_episodes)}"
            else:
                score = row["pop_best_eval"]
                judged = f"the population's best mean return over {_episodes(cfg.num_episodes)}"
                if score >= cfg.target_reward and cfg.center_episodes > cfg.num_episodes:
                    # A single lucky episode is no proof: score that solution again as a center is scored.
                    score = self.center_eval(self.searcher.status["pop_best"].values)
                    judged = f"the population best's mean return over {cfg.center_episodes} more episodes"
            if score >= cfg.target_reward:
                reached = f"reached the target reward {cfg.target_reward} at generation {self.generation}"
                return f"{reached}: {judged} was {score:.2f}"
        return None

    def _checkpoint(self, elapsed: float) -> None:
        state = {
            "searcher": self.searcher.state_dict(),
            "trainer": {
                "generation": self.generation,
                "elapsed": elapsed,
                "best_logged": self._best_logged,
                "best": self._best_record,
                "nan_count": self._nan_count,
            },
        }
        attrs = {"config": self.config.to_json(), **{f"version_{k}": v for k, v in versions().items()}}
        self.results.flush()  # a resume finds every generation up to its checkpoint logged
        self.checkpoints.save(self.generation, state, attrs)

    def _write_best(self) -> Path | None:
        """``best.h5``: the best solution as the results file holds it, for trackers' artifacts."""
        if not self._best_record:
            return None
        path = self.run_dir / "best.h5"
        with h5py.File(path, "w") as file:
            for key, value in self._best_record.items():
                file[key] = value
            file.attrs.update(env=self.config.env, network=self.config.network, config=self.config.to_json())
        return path

    def _summary(self, reason: str | None, tracked: list[str]) -> None:
        status = self.searcher.status
        which = "center" if status.get("center") is not None else "best solution"
        newest = next(reversed(self.checkpoints.list()), None)
        nan = f"hpcne: {self._nan_count} solutions had a NaN fitness (ranked worst)\n" if self._nan_count else ""
        self._say(
            f"hpcne: done ({reason}).\n"
            f"hpcne: best solution's training eval {status.get('best_eval', math.nan):.2f} "
            f"(mean return over {_episodes(self.config.num_episodes)}), "
            f"{self.problem.interaction_count:,} interactions, {self.problem.episode_count:,} episodes.\n"
            + nan
            + f"hpcne: results (log and best solution) in {self.run_dir / RESULTS_FILENAME}; "
            f"checkpoints in {self.run_dir / 'checkpoints'}"
            + (f" (newest {newest.name})" if newest is not None else "")
            + "\n"
            + "".join(f"{line}\n" for line in tracked)
            + f"hpcne: next: `hpcne evaluate {self.run_dir}` (scores the {which} over 10 episodes), "
            f"`hpcne report {self.run_dir} --plot {self.run_dir / 'curves.png'}`"
        )

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _episodes(count: int) -> str:
    return f"{count} episode" + ("" if count == 1 else "s")


def _open_results(path: Path, *, attrs: dict[str, Any], best_length: int, obs_length: int | None) -> ResultsWriter:
    """Open (or create) the results file, waiting out readers that hold its lock for a moment.

    HDF5 locks a file while it is being opened; a reader opening it (``hpcne report``, a monitoring
    script) at the same moment as the writer makes the writer's open fail at once with EAGAIN.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            return ResultsWriter(
                path,
                RESULT_COLUMNS,
                attrs=attrs,
                best_length=best_length,
                obs_length=obs_length,
                resume=path.exists(),
                flush_seconds=RESULTS_FLUSH_SECONDS,
            )
        except DamagedFileError as err:  # kept for whoever can repair it; the run goes on with a new file
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            _warn(f"{err} It was moved to {aside.name}, and a new {path.name} is started.")
        except BlockingIOError as err:
            if time.monotonic() > deadline:
                raise RunError(
                    f"Cannot open {path} for writing: another process keeps it open ({err}). Close the readers "
                    "(an h5py.File left open in a notebook, for example) and run the same command again."
                ) from err
            time.sleep(0.05)


def _warn(text: str) -> None:
    print(f"hpcne: warning: {text}", file=sys.stderr, flush=True)
