"""The ``hpcne`` command: train, resume, report, evaluate, info."""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

from hpcne.config import MUTABLE_KEYS, ConfigError, RunConfig, load_toml
from hpcne.hints import closest_name

__all__ = ["main", "run"]

# Flags of `hpcne train` that map onto RunConfig fields (flag dest == field name).
_TRAIN_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--env", {"help": "gymnasium environment id (default CartPole-v1)"}),
    ("--network", {"help": "policy network string"}),
    ("--algo", {"help": "pgpe, snes, xnes, cem, cmaes or ga"}),
    ("--popsize", {"type": int}),
    ("--generations", {"type": int}),
    ("--target-reward", {"type": float, "help": "stop when the center (or best) policy reaches this"}),
    ("--max-interactions", {"type": int, "help": "stop after this many environment steps"}),
    ("--seed", {"type": int}),
    ("--num-episodes", {"type": int}),
    ("--episode-length", {"type": int}),
    ("--decrease-rewards-by", {"type": float}),
    ("--run-dir", {"help": "output directory; an existing run there is resumed"}),
    ("--checkpoint-every", {"type": int, "help": "generations between checkpoints"}),
    ("--keep-checkpoints", {"type": int}),
    ("--workers", {"help": "'max', a number, or 1 for in-process (ignored under MPI)"}),
    ("--backend", {"choices": ["serial", "pool", "mpi"]}),
    ("--rollout-batch-size", {"type": int}),
    ("--max-num-envs", {"type": int, "help": "sub-environments per worker with --vectorized (default: automatic)"}),
    ("--vector-schedule", {"choices": ["waves", "refill"], "help": "with --vectorized (see docs/VECTORIZED.md)"}),
    ("--policy-backend", {"help": "auto, numpy, torch, vmap or loop: how workers batch policy forwards"}),
    ("--device", {"choices": ["cpu", "cuda"], "help": "cuda: each worker's policies on a GPU of its node"}),
    ("--eval-center-every", {"type": int}),
    ("--log-interval", {"type": int}),
    ("--hang-timeout", {"type": float, "help": "seconds a worker may go without a new episode (0: off; 600)"}),
    ("--nan-policy", {"choices": ["worst", "error"], "help": "a NaN fitness: rank it worst and warn, or stop"}),
    ("--track", {"help": "experiment trackers, offline in the run directory: tensorboard,mlflow,wandb"}),
]

# Flags of `hpcne train` that a resume refuses: they change what a generation computes.
_TRAIN_ONLY_FLAGS = frozenset(
    {"--obs-norm", "--no-obs-norm", "--opt"}
    | {flag for flag, _ in _TRAIN_FLAGS if flag[2:].replace("-", "_") not in MUTABLE_KEYS}
)


def _parse_value(text: str) -> Any:
    """A TOML value (number, bool, string, array); bare words stay strings."""
    from hpcne.config import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _config_from_args(args: argparse.Namespace, base: dict[str, Any], source: str = "the configuration") -> RunConfig:
    values = dict(base)
    for flag, _ in _TRAIN_FLAGS:
        dest = flag[2:].replace("-", "_")
        value = getattr(args, dest, None)
        if value is not None:
            values[dest] = _parse_value(value) if dest == "workers" else value
    if getattr(args, "obs_norm", None) is not None:
        values["observation_normalization"] = args.obs_norm
    if getattr(args, "vectorized", None) is not None:
        values["vectorized"] = args.vectorized
    if getattr(args, "distributed", None) is not None:
        values["distributed"] = args.distributed
    options = values.get("algo_options", {})
    if not isinstance(options, dict):
        raise ConfigError(
            f"algo_options must be a table of keyword arguments ([algo_options] in TOML); got {options!r}."
        )
    options = dict(options)
    for item in getattr(args, "opt", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--opt takes KEY=VALUE (e.g. --opt center_learning_rate=0.1); got {item!r}.")
        options[key.strip()] = _parse_value(value.strip())
    values["algo_options"] = options
    return RunConfig.from_dict(values, source=source)


def _resolve_config(args: argparse.Namespace) -> RunConfig:
    """File, then saved run (for resume), then flags."""
    base: dict[str, Any] = {}
    source = "the configuration"
    if getattr(args, "config", None):
        base = load_toml(args.config)
        source = f"the config file {args.config}"
    if args.command == "resume":
        from hpcne.io.checkpoint import CheckpointManager, CheckpointWarning

        with warnings.catch_warnings():  # the trainer loads the checkpoint again and warns then
            warnings.simplefilter("ignore", CheckpointWarning)
            checkpoint = CheckpointManager(_existing_run_dir(args.run_dir) / "checkpoints").load_latest()
        if checkpoint is None:
            raise ConfigError(f"{args.run_dir} has no checkpoint to resume from; start it with `hpcne train`.")
        base = dataclasses.asdict(RunConfig.from_json(checkpoint.attrs["config"]))
    config = _config_from_args(args, base, source)
    if config.run_dir is None:
        config.run_dir = str(config.default_run_dir())
    return config


def _comm() -> Any:
    from hpcne.parallel.runtime import launcher_world_size

    if launcher_world_size() > 1:
        from mpi4py import MPI

        return MPI.COMM_WORLD
    return None


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a run; every MPI rank runs this, rank 0 writes and prints."""
    import torch

    from hpcne.parallel import signals
    from hpcne.parallel.runtime import use_backend
    from hpcne.run import EXIT_OK, EXIT_USAGE, Trainer, build_problem, build_searcher
    from hpcne.watchdog import set_hang_timeout

    signals.install_stop_handlers()  # first: a signal while starting up stops after the first generation
    comm = _comm()
    rank = 0 if comm is None else comm.Get_rank()
    config, failure = None, None
    if rank == 0:
        try:
            config = _resolve_config(args)
        except Exception as err:  # raised below, after telling the other ranks
            failure = err
    if comm is not None:  # rank 0 decides the config (it may come from the run's checkpoint)
        text = comm.bcast(config.to_json() if config is not None else None, root=0)  # None: rank 0 failed
        if text is None:
            if rank != 0:
                return EXIT_OK  # rank 0 reports the error and sets the job's exit status
        else:
            config = RunConfig.from_json(text)
    if failure is not None:
        raise failure
    assert config is not None
    ranks = 1 if comm is None else comm.Get_size()
    if config.backend in ("serial", "pool") and ranks > 1:
        if rank != 0:
            return EXIT_OK  # rank 0 reports the error and sets the job's exit status
        raise ConfigError(
            f"backend {config.backend!r} was asked for, but this command runs as {ranks} MPI ranks: every rank "
            f"would train the same run on its own. Use --backend mpi (or leave it out) under mpiexec/srun, or "
            f"launch a single process for the {config.backend} backend."
        )
    use_backend(config.backend)
    set_hang_timeout(config.hang_timeout)
    problem, searcher, error = None, None, None
    try:  # the whole config is checked here: before the workers start or the run directory is made
        problem = build_problem(config)
        searcher = build_searcher(config, problem)
    except ConfigError as err:
        error = str(err)
    except Exception as err:
        text = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        error = f"could not build the problem: {text}"
    errors = [(0, socket.gethostname(), error)] if comm is None else comm.allgather((rank, socket.gethostname(), error))
    failed: dict[str, list[tuple[int, str]]] = {}
    for r, host, text in errors:
        if text is not None:
            failed.setdefault(text, []).append((r, host))
    if failed:
        if rank != 0:
            return EXIT_OK  # rank 0 reports the error and sets the job's exit status
        for text, where in failed.items():
            if comm is None:
                print(f"hpcne: error: {text}", file=sys.stderr)
                continue
            first, host = where[0]
            others = f" (and {len(where) - 1} more ranks)" if len(where) > 1 else ""
            print(f"hpcne: error: rank {first} on {host}{others}: {text}", file=sys.stderr)
        return EXIT_USAGE
    assert problem is not None
    if rank == 0 and config.device == "cuda" and not torch.cuda.is_available():
        print(
            "hpcne: warning: device 'cuda' was asked for, but torch sees no CUDA device; using the CPU.",
            file=sys.stderr,
        )
    problem.runtime  # noqa: B018 -- starts the workers; MPI worker ranks serve here and exit
    try:
        trainer = Trainer(config, problem, Path(config.run_dir), searcher=searcher)
        return trainer.run()
    finally:
        problem.kill_actors()


def cmd_report(args: argparse.Namespace) -> int:
    """Summarise runs or compare groups of runs; optionally plot learning curves and export CSV."""
    from hpcne.io.analysis import load_runs, plot_learning_curves, summarize
    from hpcne.io.report import compare_groups, load_groups, parse_groups
    from hpcne.io.video import check_output_folder

    for path, flag in ((args.plot, "--plot"), (args.csv, "--csv")):
        if path:
            _checked(check_output_folder, path, flag=flag)
    if args.min_runs is not None and args.min_runs < 1:
        raise ConfigError(f"--min-runs must be a positive integer; got {args.min_runs}.")
    if bool(args.group) == bool(args.run_dirs):
        raise ConfigError("Give run directories, or groups of them with --group NAME=GLOB, not both or neither.")
    groups = _checked(parse_groups, args.group) if args.group else None
    runs = load_groups(groups) if groups else load_runs(args.run_dirs)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.2f}".format):
        table = summarize(runs)
        print(table.to_string())
        if groups:
            print("\nover the seeds of each group (±95%: half-width of the 95% t-interval of the mean):")
            print(compare_groups(runs).T.to_string())  # one column per group
        elif len(table) > 1:  # a sweep: mean and spread over its runs
            print(f"\nover {len(table)} runs:")
            print(table.agg(["mean", "std", "min", "max"]).to_string())
    if args.csv:
        runs.to_csv(args.csv, index=False)
        print(f"hpcne: wrote every generation of every run to {args.csv}")
    if args.plot:
        group_by = "group" if groups else None
        path = plot_learning_curves(runs, args.plot, group_by=group_by, min_runs=args.min_runs)
        print(f"hpcne: wrote learning curves to {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Re-run the best or center policy of a run and report its score."""
    import numpy as np
    import torch

    from hpcne.io.checkpoint import CheckpointManager
    from hpcne.io.results import RESULTS_FILENAME
    from hpcne.io.validate import open_for_reading
    from hpcne.io.video import check_video_path
    from hpcne.neuroevolution.net import ObsNormLayer
    from hpcne.run import build_problem, build_searcher

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be a positive integer; got {args.episodes}.")
    if args.render:
        _checked(check_video_path, args.render)
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo renders off-screen only with EGL (or OSMesa)
    run_dir = _existing_run_dir(args.run_dir)
    checkpoint = CheckpointManager(run_dir / "checkpoints").load_latest()
    if checkpoint is None:
        raise ConfigError(f"{run_dir} has no checkpoint; is it a run directory of `hpcne train`?")
    config = RunConfig.from_json(checkpoint.attrs["config"])
    config.workers, config.backend = None, "serial"
    problem = build_problem(config)
    center = None
    if args.which != "best":
        searcher = build_searcher(config, problem)
        searcher.load_state_dict(checkpoint.state["searcher"])
        center = searcher.status.get("center")
        if center is None and args.which == "center":
            raise ConfigError(f"The {config.algo} searcher has no center; use --which best.")
    if center is not None:
        policy = problem.to_policy(center)
        label = f"center at generation {checkpoint.generation}"
    else:
        with open_for_reading(run_dir / RESULTS_FILENAME) as f:
            values = f["best/values"][()]
            generation = int(f["best/generation"][0])
            stats = (f["best/obs_mean"][()], f["best/obs_stdev"][()]) if "best/obs_mean" in f else None
        net = problem.make_net(values)
        policy = net if stats is None else torch.nn.Sequential(ObsNormLayer.from_arrays(*stats), net)
        label = f"best solution (found at generation {generation})"
    scores = np.array([problem.run(policy, num_episodes=1)["cumulative_reward"] for _ in range(args.episodes)])
    print(
        f"hpcne: {config.env}, {label}: mean return {scores.mean():.2f} ± {scores.std():.2f} "
        f"over {args.episodes} episode{'s' if args.episodes != 1 else ''} "
        f"(min {scores.min():.2f}, max {scores.max():.2f})"
    )
    if args.render:
        import gymnasium

        try:
            problem.visualize(policy, output=args.render)
        except gymnasium.error.DependencyNotInstalled as err:
            raise ConfigError(f"Cannot render {config.env}: {err}") from err
    return 0


def _checked(check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an argument check, turning its ValueError into a usage error."""
    try:
        return check(*args, **kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _existing_run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ConfigError(f"There is no run directory {run_dir}; give the --run-dir of an `hpcne train` run.")
    return run_dir


def cmd_info(_args: argparse.Namespace) -> int:
    """Versions, MPI library, ranks, hosts and the device map."""
    import torch

    from hpcne.parallel.devices import choose_device, env_local_rank, node_placement
    from hpcne.run import versions

    comm = _comm()
    host, local = (socket.gethostname(), env_local_rank() or 0) if comm is None else node_placement(comm)
    device = choose_device(local, {"device": "cuda"}, None, torch.device("cpu"))
    me = (host, local, str(device))
    everyone = [me] if comm is None else comm.allgather(me)
    if comm is not None and comm.Get_rank() != 0:
        return 0
    for name, version in versions().items():
        print(f"{name:10s} {version}")
    try:
        from mpi4py import MPI

        print(f"{'mpi4py':10s} {__import__('mpi4py').__version__}; {MPI.Get_library_version().splitlines()[0].strip()}")
    except Exception as err:  # MPI missing or broken: say so, do not fail
        print(f"{'mpi4py':10s} unavailable ({err})")
    print(f"{'cuda':10s} {torch.cuda.is_available()} ({torch.cuda.device_count()} visible devices)")
    print(f"ranks      {len(everyone)} on {len({h for h, _, _ in everyone})} hosts")
    for rank, (host, local_rank, dev) in enumerate(everyone):
        print(f"  rank {rank}: host {host}, node-local rank {local_rank}, device {dev}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcne", description="Neuroevolution on laptops and clusters.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a policy (resumes an existing run directory)")
    train.add_argument("config", nargs="?", help="TOML config file (flags override it)")
    resume = sub.add_parser("resume", help="continue a run from its newest valid checkpoint")
    resume.add_argument("run_dir")
    for flag, kwargs in _TRAIN_FLAGS:
        train.add_argument(flag, **kwargs)
        dest = flag[2:].replace("-", "_")
        if dest in MUTABLE_KEYS and dest != "run_dir":  # a resume may change only these (see config.py)
            resume.add_argument(flag, **kwargs)
    train.add_argument("--obs-norm", action=argparse.BooleanOptionalAction, help="observation normalization")
    train.add_argument(
        "--vectorized",
        action=argparse.BooleanOptionalAction,
        help="evaluate on gymnasium vector environments (VecGymNE; see docs/VECTORIZED.md)",
    )
    for command in (train, resume):  # a resume may switch mode: the trajectory is the same
        command.add_argument(
            "--distributed",
            action=argparse.BooleanOptionalAction,
            help="pgpe/snes/cem: workers generate their own solutions; only fitnesses travel (same results)",
        )
    train.add_argument("--opt", action="append", metavar="KEY=VALUE", help="an algorithm option (repeatable)")
    report = sub.add_parser("report", help="summary table, learning curves, CSV")
    report.add_argument("run_dirs", nargs="*")
    report.add_argument(
        "--group", action="append", metavar="NAME=GLOB", help="a group of runs to compare, e.g. pgpe='runs/pgpe/*'"
    )
    report.add_argument("--plot", metavar="FILE.png")
    report.add_argument("--csv", metavar="FILE.csv")
    report.add_argument("--min-runs", type=int, help="plot a group's mean where at least this many runs have data")
    evaluate = sub.add_parser("evaluate", help="re-run the best or center policy of a run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument(
        "--which", choices=["best", "center"], help="default: the center, or the best for searchers without one"
    )
    evaluate.add_argument("--render", metavar="FILE.mp4|FILE.gif", help="write a video of one episode")
    sub.add_parser("info", help="versions, MPI library, ranks, hosts and devices")
    return parser


def _parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown flag is reported with the usage of its subcommand and the closest flag."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub = command.choices[args.command]
        flags = {flag[2:]: flag for action in sub._actions for flag in action.option_strings if flag[:2] == "--"}
        flags.pop("help")
        first = next((word for word in unknown if word.startswith("-")), unknown[0]).split("=")[0]
        close = closest_name(first.lstrip("-"), flags) if first.startswith("--") else None
        hint = f" Did you mean {flags[close]!r}?" if close else ""
        if args.command == "resume" and first in _TRAIN_ONLY_FLAGS:
            hint = " A resume may change only how long and where the run goes on; start another run for more."
        elif args.command == "train" and not close and first.startswith("--"):
            hint = " Algorithm options go through --opt (e.g. --opt center_learning_rate=0.1)."
        sub.error(f"unrecognized arguments: {' '.join(unknown)}.{hint}")
    return args


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, *_: Any) -> None:
    """Print hpcne's own warnings (e.g. a skipped corrupt checkpoint) as one plain line."""
    if category.__module__.startswith("hpcne"):
        print(f"hpcne: warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno))


def run(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpcne`` console script and ``python -m hpcne``."""
    args = _parse_args(_parser(), argv)
    handlers = {
        "train": cmd_train,
        "resume": cmd_train,
        "report": cmd_report,
        "evaluate": cmd_evaluate,
        "info": cmd_info,
    }
    from hpcne.io.checkpoint import CheckpointError
    from hpcne.run import RunError

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return handlers[args.command](args)
        except (ConfigError, FileNotFoundError) as err:
            print(f"hpcne: error: {err}", file=sys.stderr)
            return 2
        except (CheckpointError, RunError) as err:
            print(f"hpcne: error: {err}", file=sys.stderr)
            return 1
        except OSError as err:  # a read-only or full disk, a missing permission: the message names the file
            print(f"hpcne: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # before the stop handlers were installed, or in report/evaluate
            if _comm() is not None and _comm().Get_rank() != 0:
                raise  # a worker rank returning would leave rank 0 waiting: the MPI excepthook ends the job
            print("hpcne: interrupted", file=sys.stderr)
            return 130


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit with the command's status."""
    try:
        status = run(argv)
    finally:  # also when a released MPI worker rank leaves by WorkerReleased (a SystemExit)
        stop_signals = sys.modules.get("hpcne.parallel.signals")
        if stop_signals is not None:  # train/resume installed stop handlers, and the work is done:
            stop_signals.ignore_stop_signals()  # a late Ctrl-C must not change the exit status
    sys.exit(status)
