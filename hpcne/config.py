"""Run configuration: one dataclass, read from a TOML file and overridden by command-line flags."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcne.hints import did_you_mean
from hpcne.watchdog import DEFAULT_HANG_TIMEOUT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DISTRIBUTED_ALGOS", "MUTABLE_KEYS", "ConfigError", "RunConfig", "config_differences", "load_toml"]

NAN_POLICIES = ("worst", "error")
DEFAULT_NETWORK = "Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)"

# Settings a resumed run may change: they decide when to stop, how often to write, and where
# the work runs, never what a generation computes.
MUTABLE_KEYS = frozenset(
    {
        "generations",
        "target_reward",
        "max_interactions",
        "checkpoint_every",
        "keep_checkpoints",
        "workers",
        "backend",
        "run_dir",
        "log_interval",
        "eval_center_every",
        "center_episodes",
        "rollout_batch_size",
        "device",
        "num_subbatches",
        "subbatch_size",
        "hang_timeout",
        "nan_policy",
        "track",
        "distributed",  # the same trajectory either way: only the cost changes
    }
)


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which and how to fix it."""


@dataclass
class RunConfig:
    """Everything that defines a training run.

    Attributes:
        env: Gymnasium environment id.
        network: Policy network string (constants: obs_length, act_length, ...).
        env_config: Keyword arguments for ``gymnasium.make``.
        observation_normalization: Normalise observations with running statistics.
        num_episodes: Episodes per evaluation of a solution.
        episode_length: Step limit per episode (None: the environment's own).
        decrease_rewards_by: Subtracted from every reward.
        alive_bonus_schedule: ``[t, b]`` or ``[t0, t1, b]`` (see GymNE).
        action_noise_stdev: Gaussian noise on continuous actions during training.
        rollout_batch_size: Environments stepped side by side per worker (None: automatic).
        policy_backend: How workers batch the policy forwards: auto, numpy, torch, vmap or loop (see GymNE).
        vectorized: Evaluate on gymnasium vector environments with VecGymNE (one VectorEnv per worker).
        max_num_envs: Sub-environments per worker's VectorEnv when vectorized (None: automatic; see VecGymNE).
        vector_schedule: ``waves`` or ``refill``: how a vector env that autoresets runs episodes (see VecGymNE).
        device: ``cpu``, or ``cuda``: each worker's policies on a GPU of its node, chosen by node-local
            rank (the CPU where torch sees none).
        algo: Search algorithm: pgpe, snes, xnes, cem, cmaes, ga.
        algo_options: Keyword arguments of the algorithm (popsize, learning rates, ...).
        distributed: PGPE, SNES and CEM only: every worker generates the solutions it evaluates and
            sums their noise itself, so only fitnesses and O(parameters) sums travel (the same
            trajectory as the centralized mode; see docs/PARALLEL.md).
        popsize: Shortcut for ``algo_options["popsize"]``.
        generations: Stop after this many generations.
        target_reward: Stop when the center (or best) policy's evaluation reaches this.
        max_interactions: Stop when this many environment steps were taken.
        seed: Run seed; the same seed gives the same run.
        run_dir: Output directory (default ``runs/<env>-<algo>-seed<seed>``).
        checkpoint_every: Write a checkpoint every this many generations.
        keep_checkpoints: How many checkpoints to keep.
        workers: ``"max"``, an int, or 1 for in-process (ignored under MPI).
        backend: Force ``serial``, ``pool`` or ``mpi`` (default: automatic).
        num_subbatches: Dynamic load balancing: pieces per generation.
        subbatch_size: Dynamic load balancing: solutions per piece.
        eval_center_every: Evaluate the center policy every this many generations (0: never).
        center_episodes: Episodes of each center evaluation (a target reward is judged on their mean).
        log_interval: Print a progress line every this many generations (batch logs).
        hang_timeout: Seconds an evaluating worker may go without starting a solution or an episode
            before it counts as hung and ends the run with its stack (0: never; see hpcne.watchdog).
        nan_policy: What a NaN fitness (a NaN reward, a diverged simulation) does: ``worst`` ranks it
            below every number, leaves it out of the logged mean and median, counts it and warns;
            ``error`` ends the run (exit status 1) before that generation is checkpointed.
        track: Experiment trackers to log to, offline, in the run directory: tensorboard, mlflow, wandb
            (see hpcne.trackers; ``pip install 'hpcne[track]'``).
    """

    env: str = "CartPole-v1"
    network: str = DEFAULT_NETWORK
    env_config: dict[str, Any] = field(default_factory=dict)
    observation_normalization: bool = True
    num_episodes: int = 1
    episode_length: int | None = None
    decrease_rewards_by: float | None = None
    alive_bonus_schedule: list[float] | None = None
    action_noise_stdev: float | None = None
    rollout_batch_size: int | None = None
    policy_backend: str = "auto"
    vectorized: bool = False
    max_num_envs: int | None = None
    vector_schedule: str = "waves"
    device: str = "cpu"
    algo: str = "pgpe"
    algo_options: dict[str, Any] = field(default_factory=dict)
    distributed: bool = False
    popsize: int | None = None
    generations: int | None = 50
    target_reward: float | None = None
    max_interactions: int | None = None
    seed: int = 0
    run_dir: str | None = None
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    workers: int | str | None = "max"
    backend: str | None = None
    num_subbatches: int | None = None
    subbatch_size: int | None = None
    eval_center_every: int = 1
    center_episodes: int = 5
    log_interval: int = 1
    hang_timeout: float = DEFAULT_HANG_TIMEOUT
    nan_policy: str = "worst"
    track: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "the configuration") -> RunConfig:
        """Build a config, refusing unknown keys with a suggestion."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"Unknown option {key!r} in {source}.{did_you_mean(key, names)}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Check types and ranges; raise ConfigError naming the option."""
        from hpcne.algorithms import ALGORITHMS

        if self.algo not in ALGORITHMS:
            raise ConfigError(f"Unknown algo {self.algo!r}; choose one of {', '.join(sorted(ALGORITHMS))}.")
        positive = ("num_episodes", "checkpoint_every", "keep_checkpoints", "center_episodes", "log_interval")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        if not isinstance(self.vectorized, bool):
            raise ConfigError(f"vectorized must be true or false; got {self.vectorized!r}.")
        if self.vector_schedule not in ("waves", "refill"):
            raise ConfigError(f"vector_schedule must be waves or refill; got {self.vector_schedule!r}.")
        for name in (
            "generations",
            "max_interactions",
            "episode_length",
            "popsize",
            "rollout_batch_size",
            "max_num_envs",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or unset; got {value!r}.")
        from hpcne.neuroevolution.policies import POLICY_BACKENDS

        if self.policy_backend not in POLICY_BACKENDS:
            raise ConfigError(
                f"policy_backend must be one of {', '.join(POLICY_BACKENDS)}; got {self.policy_backend!r}."
            )
        timeout = self.hang_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < math.inf:
            raise ConfigError(f"hang_timeout must be a number of seconds, 0 to turn it off; got {timeout!r}.")
        if self.nan_policy not in NAN_POLICIES:
            raise ConfigError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}; got {self.nan_policy!r}.")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be 'cpu' or 'cuda'; got {self.device!r}.")
        if not isinstance(self.eval_center_every, int) or self.eval_center_every < 0:
            raise ConfigError(
                f"eval_center_every must be 0 (never) or a positive integer; got {self.eval_center_every!r}."
            )
        if self.generations is None and self.target_reward is None and self.max_interactions is None:
            raise ConfigError("Nothing would stop the run: set generations, target_reward or max_interactions.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer; got {self.seed!r}.")
        if self.backend not in (None, "serial", "pool", "mpi"):
            raise ConfigError(f"backend must be serial, pool or mpi; got {self.backend!r}.")
        if not (self.workers in (None, "max") or (isinstance(self.workers, int) and self.workers >= 0)):
            raise ConfigError(f"workers must be 'max' or a non-negative integer; got {self.workers!r}.")
        from hpcne.trackers import check_trackers

        try:
            self.track = check_trackers(self.track)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if not isinstance(self.algo_options, dict):
            raise ConfigError(f"algo_options must be a table of keyword arguments; got {self.algo_options!r}.")
        if not isinstance(self.distributed, bool):
            raise ConfigError(f"distributed must be true or false; got {self.distributed!r}.")
        if self.distributed and self.algo not in DISTRIBUTED_ALGOS:
            raise ConfigError(
                f"distributed = true needs one of {', '.join(DISTRIBUTED_ALGOS)}; {self.algo!r} updates from every "
                "solution's full parameter vector, so its population is sampled and updated on rank 0. "
                "Set distributed = false (the default) or choose another algo."
            )
        self._validate_numbers()

    def _validate_numbers(self) -> None:
        """Refuse NaN and infinity wherever they make no sense (everywhere but hang_timeout's checks)."""
        for name in ("target_reward", "decrease_rewards_by", "action_noise_stdev"):
            value = getattr(self, name)
            if value is not None and not _is_finite_number(value):
                raise ConfigError(f"{name} must be a finite number or unset; got {value!r}.")
        if self.action_noise_stdev is not None and self.action_noise_stdev < 0:
            raise ConfigError(f"action_noise_stdev must be >= 0; got {self.action_noise_stdev!r}.")
        schedule = self.alive_bonus_schedule
        if schedule is not None and not (
            isinstance(schedule, list) and len(schedule) in (2, 3) and all(map(_is_finite_number, schedule))
        ):
            raise ConfigError(
                f"alive_bonus_schedule must be [t, bonus] or [t0, t1, bonus] of finite numbers; got {schedule!r}."
            )
        for key, value in self.algo_options.items():
            bad = _non_finite(value)
            if bad is not None:
                raise ConfigError(f"algo option {key} must hold finite numbers; got {bad!r} in {value!r}.")
            if key in POSITIVE_OPTIONS and _is_finite_number(value) and value <= 0:
                raise ConfigError(f"algo option {key} must be positive; got {value!r}.")

    def searcher_options(self) -> dict[str, Any]:
        """The algorithm's keyword arguments: defaults for the algorithm, then the user's."""
        options = dict(ALGO_DEFAULTS.get(self.algo, {}))
        # stdev_init and radius_init are two ways to give one setting: the user's replaces the default's.
        for mine, other in (("stdev_init", "radius_init"), ("radius_init", "stdev_init")):
            if mine in self.algo_options and other not in self.algo_options:
                options.pop(other, None)
        options.update(self.algo_options)
        if self.popsize is not None:
            options["popsize"] = self.popsize
        if self.distributed:
            options["distributed"] = True
        return options

    def default_run_dir(self) -> Path:
        """``runs/<env>-<algo>-seed<seed>``."""
        return Path("runs") / f"{self.env.replace('/', '_')}-{self.algo}-seed{self.seed}"

    def to_json(self) -> str:
        """The config as JSON (stored in checkpoints and results files)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text), source="the saved configuration")


# The searchers whose update needs only sums over the noise (a diagonal Gaussian).
DISTRIBUTED_ALGOS = ("pgpe", "snes", "cem")

# Defaults per algorithm when the user gives no options: chosen so that `hpcne train --env
# CartPole-v1` solves it in about a minute on 2 cores (see examples/ for other tasks).
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "pgpe": {
        "popsize": 50,
        "center_learning_rate": 0.2,
        "stdev_learning_rate": 0.1,
        "radius_init": 4.5,
        "optimizer": "clipup",
    },
    "snes": {"stdev_init": 0.5},
    "xnes": {"stdev_init": 0.5},
    "cem": {"popsize": 50, "parenthood_ratio": 0.25, "stdev_init": 0.5},
    "cmaes": {"stdev_init": 0.5},
    "ga": {"popsize": 50, "mutation_stdev": 0.1},
}


POSITIVE_OPTIONS = frozenset(
    {"center_learning_rate", "stdev_learning_rate", "stdev_init", "stdev_max_change", "mutation_stdev"}
)
"""Algorithm options that only make sense as positive numbers (a step size, a spread, a relative change);
the searchers check the others themselves (PGPE's ``radius_init``, for one)."""


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _non_finite(value: Any) -> float | None:
    """The first NaN or infinity in a number or a (nested) list of them, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return next((bad for item in value if (bad := _non_finite(item)) is not None), None)
    return None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file: top-level keys are RunConfig fields; ``[algo_options]`` a table."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Config file {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file {path} is not a text file (TOML is UTF-8 text); pass the .toml file.") from None


def config_differences(saved: RunConfig, new: RunConfig) -> list[str]:
    """Differences between a run's saved config and a new one that a resume may not accept."""
    old, cur = dataclasses.asdict(saved), dataclasses.asdict(new)
    return [
        f"{key}: the run has {old[key]!r}, the new configuration {cur[key]!r}"
        for key in old
        if key not in MUTABLE_KEYS and old[key] != cur[key]
    ]
