"""The training loop: ask → evaluate → tell → log → checkpoint, with signals and exact restart."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import gymnasium
import numpy as np
import torch

import hpcne
from hpcne.algorithms import ALGORITHMS, SearchAlgorithm
from hpcne.config import ConfigError, RunConfig, config_differences
from hpcne.io.checkpoint import Checkpoint, CheckpointManager
from hpcne.io.results import RESULT_COLUMNS, RESULTS_FILENAME, ResultsWriter
from hpcne.neuroevolution import GymNE
from hpcne.parallel import signals

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_USAGE", "Trainer", "build_problem", "versions"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed after a stop signal; run the same command again to resume
# Center evaluations use rounds far from the training rounds so that they never change training.
CENTER_ROUND_BASE = 2**40


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
    """The GymNE problem a config describes."""
    return GymNE(
        config.env,
        config.network,
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
        rollout_batch_size=config.rollout_batch_size,
    )


def build_searcher(config: RunConfig, problem: GymNE) -> SearchAlgorithm:
    """The searcher a config describes, with a clear error for bad options."""
    cls = ALGORITHMS[config.algo]
    try:
        return cls(problem, **config.searcher_options())
    except TypeError as err:
        raise ConfigError(f"Bad options for algo {config.algo!r}: {err}") from err


class Trainer:
    """Runs one training run on the main process and owns its files (rank 0 only under MPI)."""

    def __init__(self, config: RunConfig, problem: GymNE, run_dir: Path, *, out: TextIO = sys.stdout) -> None:
        """Prepare the run directory, resuming from its newest valid checkpoint if there is one.

        Raises:
            ConfigError: The run directory holds a run whose problem differs from ``config``.
        """
        self.config, self.problem, self.run_dir, self.out = config, problem, run_dir, out
        run_dir.mkdir(parents=True, exist_ok=True)
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
        self.searcher = build_searcher(config, problem)
        self.generation, self._elapsed_before = 0, 0.0
        if checkpoint is not None:
            self._restore(checkpoint)
        attrs = {"config": config.to_json(), "env": config.env, **{f"version_{k}": v for k, v in versions().items()}}
        self.results = ResultsWriter(
            run_dir / RESULTS_FILENAME,
            RESULT_COLUMNS,
            attrs=attrs,
            best_length=problem.solution_length,
            obs_length=problem._obs_length if problem.observation_normalization else None,
            resume=(run_dir / RESULTS_FILENAME).exists(),
        )
        self.results.truncate(self.generation)
        self._best_logged = math.nan if checkpoint is None else float(checkpoint.state["trainer"]["best_logged"])
        self.resumed_from = checkpoint

    def _restore(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.state
        self.searcher.load_state_dict(state["searcher"])
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
        started = time.monotonic()
        progress = _Progress(self.out, cfg, self.generation)
        stop_reason = self._stop_reason(None)
        try:
            while stop_reason is None:
                eval_before = self.problem.eval_seconds
                self.searcher.step()
                self.generation += 1
                elapsed = self._elapsed_before + time.monotonic() - started
                row = self._row(elapsed, self.problem.eval_seconds - eval_before)
                self.results.append(row)
                self._log_best(row)
                progress.update(row)
                stop_reason = self._stop_reason(row)
                preempted = signals.stop_requested() or self.problem.runtime.stop_requested
                if preempted or stop_reason or self.generation % cfg.checkpoint_every == 0:
                    self._checkpoint(elapsed)
                if preempted:
                    how = signals.stop_signal() or "a stop request on another rank"
                    progress.close()
                    self._say(
                        f"hpcne: stopped by {how} after generation {self.generation}; checkpoint written. "
                        f"Run the same command (or `hpcne resume {self.run_dir}`) to continue. Exit status {EXIT_PREEMPTED}."
                    )
                    return EXIT_PREEMPTED
        finally:
            progress.close()
            self.results.close()
        self._summary(stop_reason)
        return EXIT_OK

    def _row(self, elapsed: float, eval_time: float) -> dict[str, float | int]:
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
            "comm_time": math.nan,
            "stdev_norm": float(torch.linalg.vector_norm(stdev.double())) if stdev is not None else math.nan,
        }

    def center_eval(self, center: torch.Tensor) -> float:
        """Score the center policy here, without touching training's seeds, counters or statistics."""
        problem = self.problem
        saved = problem._num_episodes
        problem._num_episodes = self.config.center_episodes
        try:
            values = center.detach().cpu().numpy().astype(problem.wire_dtype)[None]
            return float(problem._evaluate_local(values, 0, CENTER_ROUND_BASE + self.generation).fitness[0])
        finally:
            problem._num_episodes = saved

    def _log_best(self, row: dict[str, Any]) -> None:
        if not math.isnan(self._best_logged) and row["best_eval"] <= self._best_logged:
            return
        self._best_logged = row["best_eval"]
        stats = self.problem._obs_stats
        self.results.update_best(
            self.searcher.status["best"].values.detach().cpu().numpy(),
            row["best_eval"],
            self.generation,
            obs_mean=None if stats is None else stats.mean,
            obs_stdev=None if stats is None else stats.stdev,
            obs_count=None if stats is None else stats.count,
        )

    def _stop_reason(self, row: dict[str, Any] | None) -> str | None:
        cfg = self.config
        if cfg.generations is not None and self.generation >= cfg.generations:
            return f"reached {cfg.generations} generations"
        if row is None:
            return None
        if cfg.max_interactions is not None and row["interaction_count"] >= cfg.max_interactions:
            return f"used the budget of {cfg.max_interactions} interactions"
        if cfg.target_reward is not None:
            score = row["center_eval"] if not math.isnan(row["center_eval"]) else row["pop_best_eval"]
            if score >= cfg.target_reward:
                return f"reached the target reward {cfg.target_reward} ({score:.1f})"
        return None

    def _checkpoint(self, elapsed: float) -> None:
        state = {
            "searcher": self.searcher.state_dict(),
            "trainer": {"generation": self.generation, "elapsed": elapsed, "best_logged": self._best_logged},
        }
        attrs = {"config": self.config.to_json(), **{f"version_{k}": v for k, v in versions().items()}}
        self.checkpoints.save(self.generation, state, attrs)

    def _summary(self, reason: str | None) -> None:
        status = self.searcher.status
        self._say(
            f"hpcne: done ({reason}). Best eval {status.get('best_eval', math.nan):.2f} after "
            f"{self.problem.interaction_count} interactions.\n"
            f"hpcne: results in {self.run_dir}/{RESULTS_FILENAME}, checkpoints in {self.run_dir}/checkpoints\n"
            f"hpcne: next: `hpcne report {self.run_dir} --plot curves.png` or `hpcne evaluate {self.run_dir}`"
        )

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class _Progress:
    """A live bar on a terminal; one plain line per ``log_interval`` generations in a batch log."""

    def __init__(self, out: TextIO, config: RunConfig, start: int) -> None:
        self._out, self._config = out, config
        self._interval = config.log_interval
        self._last = (time.monotonic(), None)
        self._bar: Any = None
        if out.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("gen {task.completed}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("train", total=config.generations, completed=start, info="")
            self._bar.start()

    def update(self, row: dict[str, Any]) -> None:
        now = time.monotonic()
        t0, steps0 = self._last
        rate = (row["interaction_count"] - steps0) / max(now - t0, 1e-9) if steps0 is not None else math.nan
        self._last = (now, row["interaction_count"])
        info = (
            f"best {row['best_eval']:.2f}  mean {row['mean_eval']:.2f}  center {row['center_eval']:.2f}  "
            f"{rate:,.0f} steps/s"
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=row["generation"], info=info)
        elif row["generation"] % self._interval == 0:
            total = f"/{self._config.generations}" if self._config.generations else ""
            print(
                f"gen {row['generation']}{total}  {info}  interactions {row['interaction_count']}",
                file=self._out,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
