"""The environment's own cost of a run's steps: record a training run's env calls, replay them bare.

The bare-loop ceiling (random actions) prices a step in the states that random actions reach. A
policy visits other states, and a MuJoCo step costs what its contacts cost. To tell hpcne's
overhead from the environment's, :func:`record` runs ``hpcne train CONFIG`` in this process and
logs every call the rollout engine makes to its environments (slot, reset seed or action, and
the reward and the observation's sum it got back), those of the centre evaluations included.
:func:`replay` makes fresh environments the way the engine does (``gym.make`` less its
bookkeeping wrappers) and makes the same calls in the same order with nothing else in between:
its training steps over its time (centre evaluations included, as in the run's own rate) is the
ceiling of this run's own work.
A training run is the same for the same seed whatever the layout, so one recording serves one
worker, N ranks and an N-worker pool alike.

``order="by-slot"`` replays each slot's calls as one stream after another instead of
interleaved: the same states, with one environment's data hot in the cache at a time.

The log is a ``.npz`` of plain arrays (no pickle)::

    python -m benchmarks.replay record examples/halfcheetah-pgpe.toml 6 /tmp/hc.npz
    python -m benchmarks.replay replay /tmp/hc.npz --first-round 1
    python -m benchmarks.replay interleave examples/halfcheetah-pgpe.toml /tmp/hc.npz 2
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Replayer", "alternate", "interleave", "record", "replay"]

NO_SEED = -1  # the ``seed`` entry of a reset without a seed, and of a step


def record(config: Path, generations: int, out: Path) -> dict[str, Any]:
    """Train ``config`` for ``generations`` in this process, logging its environment calls to ``out``.

    Returns:
        The number of calls logged and of training interactions.
    """
    import hpcne.neuroevolution.gymne as gymne
    from hpcne.run import CENTER_ROUND_BASE

    rounds: list[int] = []
    slots: list[int] = []
    seeds: list[int] = []
    actions: list[Any] = []
    rewards: list[float] = []
    sums: list[float] = []  # of each observation returned: the replay must see the same ones
    training: list[bool] = []
    # The training round of the calls being made (a centre evaluation's: that of its generation; -1 outside
    # an evaluation, e.g. the automatic slot count's timing), and whether they are training's.
    current: dict[str, Any] = {"round": -1, "training": True}

    class Recorder:
        """An environment whose ``step`` and ``reset`` are logged (the engine uses nothing else)."""

        def __init__(self, env: Any, slot: int) -> None:
            self.env, self.slot, self.observation_space = env, slot, env.observation_space

        def reset(self, *, seed: int | None = None) -> Any:
            rounds.append(current["round"])
            training.append(current["training"])
            slots.append(self.slot)
            seeds.append(NO_SEED if seed is None else seed)
            actions.append(None)
            rewards.append(0.0)
            result = self.env.reset(seed=seed)
            sums.append(float(np.sum(result[0])))
            return result

        def step(self, action: Any) -> Any:
            result = self.env.step(action)
            rounds.append(current["round"])
            training.append(current["training"])
            slots.append(self.slot)
            seeds.append(NO_SEED)
            actions.append(np.array(action))
            rewards.append(float(result[1]))
            sums.append(float(np.sum(result[0])))
            return result

    original_evaluate, original_lockstep = gymne.GymNE._evaluate_local, gymne.run_lockstep  # what _train swaps

    def evaluate(self: Any, values: np.ndarray, first_index: int, eval_round: int) -> Any:
        centre = eval_round >= CENTER_ROUND_BASE  # generation g's centre: after training round g - 1
        current.update({"round": eval_round - CENTER_ROUND_BASE - 1 if centre else eval_round, "training": not centre})
        try:
            return original_evaluate(self, values, first_index, eval_round)
        finally:
            current.update({"round": -1, "training": True})

    def lockstep(policy: Any, envs: list[Any], *args: Any, **kwargs: Any) -> Any:
        if current["round"] >= 0 and not isinstance(envs[0], gymne._FreeEnv):
            envs = [Recorder(env, slot) for slot, env in enumerate(envs)]
        return original_lockstep(policy, envs, *args, **kwargs)

    _train(config, generations, evaluate, lockstep)
    env_id, env_config = _config_env(config)
    steps = [a for a in actions if a is not None]
    width = int(np.prod(steps[0].shape)) if steps else 0
    table = np.zeros((len(actions), width), steps[0].dtype if steps else np.float32)
    for i, action in enumerate(actions):
        if action is not None:
            table[i] = action.reshape(-1)
    np.savez(
        out,
        round=np.asarray(rounds, np.int64),
        slot=np.asarray(slots, np.int32),
        seed=np.asarray(seeds, np.int64),
        is_step=np.asarray([a is not None for a in actions]),
        training=np.asarray(training),
        action=table,
        action_shape=np.asarray(steps[0].shape if steps else (), np.int64),
        reward=np.asarray(rewards),
        obs_sum=np.asarray(sums),
        env=np.asarray(env_id),
        env_config=np.asarray(json.dumps(env_config)),
    )
    return {"calls": len(actions), "steps": int(sum(a is not None and t for a, t in zip(actions, training)))}


def _train(config: Path, generations: int, evaluate: Callable[..., Any], lockstep: Callable[..., Any]) -> None:
    """``hpcne train config`` for ``generations`` here (one worker, no early stop), with
    ``GymNE._evaluate_local`` and the engine that GymNE calls replaced by ``evaluate`` and ``lockstep``."""
    import hpcne.neuroevolution.gymne as gymne
    from hpcne import cli

    saved = gymne.GymNE._evaluate_local, gymne.run_lockstep
    gymne.GymNE._evaluate_local, gymne.run_lockstep = evaluate, lockstep
    try:
        with tempfile.TemporaryDirectory(prefix="hpcne-replay-") as run_dir:
            options = ["--generations", str(generations), "--run-dir", run_dir, "--workers", "1"]
            status = cli.run(["train", str(config), *options, "--target-reward", "1e30"])
    finally:
        gymne.GymNE._evaluate_local, gymne.run_lockstep = saved
    if status != 0:
        raise RuntimeError(f"hpcne train {config} exited with status {status}.")


def _config_env(config: Path) -> tuple[str, dict[str, Any]]:
    """The gymnasium id and ``env_config`` of a config file."""
    from hpcne.config import load_toml

    table = load_toml(config)
    return str(table["env"]), dict(table.get("env_config", {}))


class Replayer:
    """Fresh environments for a log of :func:`record`, and its calls made on them, timed."""

    def __init__(self, path: Path) -> None:
        from hpcne.neuroevolution.gymne import make_env, unwrap_make
        from hpcne.neuroevolution.quiet import quiet_env_libraries

        log = np.load(path, allow_pickle=False)
        self.env_id = str(log["env"])
        env_config = json.loads(str(log["env_config"]))
        quiet_env_libraries(self.env_id)
        self.rounds, self.slots, self.seeds, self.is_step = log["round"], log["slot"], log["seed"], log["is_step"]
        self.training, self.rewards, self.sums = log["training"], log["reward"], log["obs_sum"]
        shape = tuple(int(n) for n in log["action_shape"])
        self.actions = log["action"].reshape(len(self.rounds), *shape) if len(self.rounds) else log["action"]
        self.envs = [unwrap_make(make_env(self.env_id, env_config))[0] for _ in range(int(self.slots.max()) + 1)]
        order = np.argsort(self.rounds, kind="stable")  # each round's calls in their order, found once
        starts = np.searchsorted(self.rounds[order], np.arange(int(self.rounds.max(initial=-1)) + 2))
        self._by_round = [order[a:b] for a, b in itertools.pairwise(starts.tolist())]

    def calls(self, eval_round: int, training: bool | None = None) -> np.ndarray:
        """The indices of round ``eval_round``'s calls, in their order: all, or its training (centre) calls alone."""
        found = self._by_round[eval_round] if 0 <= eval_round < len(self._by_round) else np.empty(0, np.int64)
        return found if training is None else found[self.training[found] == training]

    def steps(self, indices: np.ndarray) -> int:
        """The training steps among the calls ``indices``."""
        return int((self.is_step[indices] & self.training[indices]).sum())

    def run(self, indices: np.ndarray) -> tuple[float, float, bool]:
        """Make the calls ``indices`` in that order: wall and CPU seconds, and whether they gave what they logged."""
        work: list[tuple[Callable[..., Any], Any]] = []
        for i in indices.tolist():
            env = self.envs[self.slots[i]]
            if self.is_step[i]:
                work.append((env.step, self.actions[i]))
            else:
                work.append((_resetter(env), None if self.seeds[i] == NO_SEED else int(self.seeds[i])))
        results: list[Any] = [None] * len(work)
        # The results are kept for the check below; the run itself drops each step's. Without this the
        # cyclic collector scans the growing list again and again: half of a CartPole round's replays took 2x.
        gc.disable()
        try:
            started, cpu = time.perf_counter(), time.process_time()
            for k, (fn, arg) in enumerate(work):
                results[k] = fn(arg)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            gc.enable()
        rewards = [float(r[1]) if len(r) == 5 else 0.0 for r in results]
        sums = [float(np.sum(r[0])) for r in results]
        same = rewards == self.rewards[indices].tolist() and sums == self.sums[indices].tolist()
        return wall, cpu, same


def replay(path: Path, *, first_round: int = 0, order: str = "run") -> dict[str, Any]:
    """Make ``path``'s logged calls from round ``first_round`` on in fresh environments; their speed.

    Args:
        path: A log written by :func:`record`.
        first_round: Leave out the rounds before it (the warm-up), after replaying them untimed so
            that every environment starts the timed part in the state the run left it in.
        order: ``"run"`` (interleaved as the engine made them) or ``"by-slot"`` (one slot's calls
            after another's).

    Returns:
        Steps per second and per CPU second of the timed part, its training steps and all its
        steps (centre evaluations' included), and whether every reward and observation sum equals
        the logged one (the trajectories are the run's).
    """
    if order not in ("run", "by-slot"):
        raise ValueError(f"order is 'run' or 'by-slot'; got {order!r}")
    replayer = Replayer(path)
    rounds = replayer.rounds
    timed = np.flatnonzero(rounds >= first_round)
    if order == "by-slot":
        timed = timed[np.argsort(replayer.slots[timed], kind="stable")]
    replayer.run(np.flatnonzero((rounds >= 0) & (rounds < first_round)))
    wall, cpu, same = replayer.run(timed)
    steps = replayer.steps(timed)
    return {
        "env": replayer.env_id,
        "steps": steps,
        "all_steps": int(replayer.is_step[timed].sum()),
        "steps_per_s": steps / wall,
        "steps_per_cpu_s": steps / cpu,
        "same_trajectories": same,
    }


def alternate(config: Path, generations: int, path: Path, *, first_round: int = 1) -> dict[str, Any]:
    """Train ``config`` here, and after each evaluation replay that round's logged training calls.

    The two alternate every round, so that a drift in the machine's speed (a shared VM's
    neighbours) touches both alike: each round's hpcne evaluation (``GymNE``'s rollouts: policy
    calls, normalization, the engine) is set against the bare environment calls it made.

    The whole run is set against its calls too: before each round's evaluation, every call of
    the generation before (its training and centre evaluation calls) is replayed, and hpcne's
    time from round ``first_round``'s evaluation to the last round's, less the replays made in
    between, is set against the replays of those generations. That is the replay ceiling's
    ratio (``python -m benchmarks examples``) with the update, logging, checkpoints and centre
    evaluations in, measured round by round.

    Each centre evaluation is also followed at once by the replay of its own calls
    (``centre_replay_over_hpcne``): the centre's few episodes run on few slots, where the engine's
    fixed cost per lockstep iteration weighs most.

    Returns:
        Per round from ``first_round`` on: training steps, hpcne's and the replay's seconds; their
        totals' ratio; the whole run's (``run_replay_over_hpcne``, ``run_steps``, ``run_rounds``, and
        the share and ms per generation of hpcne's time outside its evaluations: the update, logging
        and checkpoints, ``run_outside_evaluations_*``);
        the centre evaluations' (``centre_replay_over_hpcne``, ``centre_evaluations``); and whether
        every replayed call gave what it logged.
    """
    import hpcne.neuroevolution.gymne as gymne
    from hpcne.run import CENTER_ROUND_BASE

    replayer = Replayer(path)
    rows: list[dict[str, Any]] = []
    same = True
    original = gymne.GymNE._evaluate_local
    replaying = 0.0  # seconds spent in replays (their checks too): off hpcne's clock
    evaluating = 0.0  # seconds spent in hpcne's evaluations, training and centre
    window: list[tuple[float, float]] = []  # hpcne's clock and ``evaluating`` at each measured round's evaluation
    whole: dict[str, float] = {"seconds": 0.0, "steps": 0}

    def hpcne_clock() -> float:
        return time.perf_counter() - replaying

    def replayed(indices: np.ndarray) -> float:
        """Replay ``indices``: their timed seconds."""
        nonlocal same, replaying
        started = time.perf_counter()
        wall, _, ok = replayer.run(indices)
        same = same and ok
        replaying += time.perf_counter() - started
        return wall

    def timed(self: Any, values: np.ndarray, first_index: int, eval_round: int) -> tuple[float, Any]:
        """hpcne's evaluation: its seconds and its result."""
        nonlocal evaluating
        started = time.perf_counter()
        result = original(self, values, first_index, eval_round)
        seconds = time.perf_counter() - started
        evaluating += seconds
        return seconds, result

    def evaluate(self: Any, values: np.ndarray, first_index: int, eval_round: int) -> Any:
        if eval_round >= CENTER_ROUND_BASE:  # generation g's centre: after training round g - 1
            return centre(self, values, first_index, eval_round, eval_round - CENTER_ROUND_BASE - 1)
        indices = replayer.calls(eval_round, training=True)
        if not len(indices):  # a round the log does not have
            return original(self, values, first_index, eval_round)
        if eval_round > first_round:  # the generation before, whole: its training and centre calls
            before = replayer.calls(eval_round - 1)
            whole["seconds"] += replayed(before)
            whole["steps"] += replayer.steps(before)
        if eval_round >= first_round:
            window.append((hpcne_clock(), evaluating))
        seconds, result = timed(self, values, first_index, eval_round)
        wall = replayed(indices)
        if eval_round >= first_round:
            rows.append({"round": eval_round, "steps": replayer.steps(indices), "hpcne_s": seconds, "replay_s": wall})
        return result

    def centre(self: Any, values: np.ndarray, first_index: int, eval_round: int, training_round: int) -> Any:
        """A centre evaluation, then the replay of its calls (measured from ``first_round`` on)."""
        seconds, result = timed(self, values, first_index, eval_round)
        indices = replayer.calls(training_round, training=False)
        if training_round >= first_round and len(indices):
            centres.append({"hpcne_s": seconds, "replay_s": replayed(indices)})
        return result

    centres: list[dict[str, float]] = []
    _train(config, generations, evaluate, gymne.run_lockstep)
    hpcne_s, replay_s = sum(r["hpcne_s"] for r in rows), sum(r["replay_s"] for r in rows)
    centre_s = sum(c["hpcne_s"] for c in centres)
    ratios = [r["replay_s"] / r["hpcne_s"] for r in rows]
    run_rounds = max(len(window) - 1, 0)  # the generations replayed whole: all measured ones but the last
    run_s = window[-1][0] - window[0][0] if run_rounds else math.nan
    outside_s = run_s - (window[-1][1] - window[0][1]) if run_rounds else math.nan  # update, logging, checkpoints
    return {
        "env": replayer.env_id,
        "rounds": rows,
        "replay_over_hpcne": replay_s / hpcne_s,
        "round_ratios": [round(x, 4) for x in ratios],
        "run_replay_over_hpcne": whole["seconds"] / run_s if run_rounds else math.nan,
        "run_outside_evaluations_share": outside_s / run_s if run_rounds else math.nan,
        "run_outside_evaluations_ms_per_generation": 1e3 * outside_s / run_rounds if run_rounds else math.nan,
        "run_steps": int(whole["steps"]),
        "run_rounds": run_rounds,
        "centre_replay_over_hpcne": sum(c["replay_s"] for c in centres) / centre_s if centres else math.nan,
        "centre_evaluations": len(centres),
        "same_trajectories": same,
    }


def interleave(config: Path, path: Path, eval_round: int, *, repeats: int = 3) -> dict[str, Any]:
    """What taking turns costs: round ``eval_round``'s logged training calls, the numpy work of an engine
    iteration once per lockstep iteration, and both interleaved, each timed alone (best of ``repeats``).

    The work is the engine's numpy calls for ``config``'s policy on the round's slots (normalization,
    the forward, the finite sum, the action clip, the statistics), on fixed arrays. ``interference`` is
    the interleaved time less the two apart, over the calls' time alone: what the steps and the work
    cost more when they alternate on one core (the caches they share), which no count of hpcne's
    own instructions shows.
    """
    from hpcne.config import RunConfig, load_toml
    from hpcne.neuroevolution.policies import NumpyMLP
    from hpcne.run import build_problem

    replayer = Replayer(path)
    indices = replayer.calls(eval_round, training=True)
    if not len(indices):
        raise ValueError(f"{path} holds no training calls of round {eval_round}")
    problem = build_problem(RunConfig.from_dict(load_toml(config)))
    slots = int(replayer.slots[indices].max()) + 1
    policy = NumpyMLP(NumpyMLP.plan_for(problem.network), slots)
    rng = np.random.default_rng(0)
    for slot in range(slots):
        policy.load(slot, (0.1 * rng.standard_normal(problem.solution_length)).astype(np.float32))
    raw = rng.standard_normal((slots, problem._obs_length)).astype(np.float32)
    x, mean, std = np.empty_like(raw), np.zeros(raw.shape[1], np.float32), np.ones(raw.shape[1], np.float32)
    sums = np.zeros((slots, 2, raw.shape[1]))
    step_sums = np.zeros_like(sums)
    busy = list(range(slots))

    def work() -> None:
        np.subtract(raw, mean, x)
        np.divide(x, std, x)
        out = policy(x, busy)
        np.add.reduce(out, axis=None)
        clipped = np.maximum(out, -1.0)
        np.minimum(clipped, 1.0, out=clipped)
        np.copyto(step_sums[:, 0], raw)
        np.multiply(step_sums[:, 0], step_sums[:, 0], step_sums[:, 1])
        np.add(sums, step_sums, sums)

    # The calls split where lockstep iterations start (the first step, and a step on a slot not after the
    # last step's): segment k holds iteration k's calls, and segment 0 the resets before the first one.
    segments: list[list[tuple[Callable[..., Any], Any]]] = [[]]
    last = None
    for i in indices.tolist():
        env = replayer.envs[replayer.slots[i]]
        if replayer.is_step[i]:
            if last is None or replayer.slots[i] <= last:
                segments.append([])
            last = replayer.slots[i]
            segments[-1].append((env.step, replayer.actions[i]))
        else:
            segments[-1].append((_resetter(env), None if replayer.seeds[i] == NO_SEED else int(replayer.seeds[i])))

    def timed(with_calls: bool, with_work: bool) -> float:
        """The segments in order, with the calls, the work before each iteration, or both (the same loops)."""
        gc.disable()
        try:
            started = time.perf_counter()
            for k, segment in enumerate(segments):
                if with_work and k:
                    work()
                if with_calls:
                    for fn, arg in segment:
                        fn(arg)
            return time.perf_counter() - started
        finally:
            gc.enable()

    best = {"calls": math.inf, "work": math.inf, "both": math.inf}
    for _ in range(repeats):  # in turns, so that a drift of the machine touches all three alike
        for name, with_calls, with_work in (("calls", True, False), ("work", False, True), ("both", True, True)):
            best[name] = min(best[name], timed(with_calls, with_work))
    return {
        "env": replayer.env_id,
        "round": eval_round,
        "steps": replayer.steps(indices),
        "iterations": len(segments) - 1,
        "slots": slots,
        **{f"{name}_s": round(seconds, 4) for name, seconds in best.items()},
        "work_over_calls": best["work"] / best["calls"],
        "interference": (best["both"] - best["calls"] - best["work"]) / best["calls"],
    }


def _resetter(env: Any) -> Callable[[int | None], Any]:
    def reset(seed: int | None) -> Any:
        return env.reset(seed=seed)

    return reset


def main() -> None:
    """``record CONFIG GENERATIONS OUT``, ``replay LOG``, ``alternate CONFIG GENERATIONS LOG`` or ``interleave
    CONFIG LOG ROUND``; prints a JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("record", help="train a config in this process, logging its environment calls")
    rec.add_argument("config", type=Path)
    rec.add_argument("generations", type=int)
    rec.add_argument("out", type=Path)
    rep = sub.add_parser("replay", help="replay a log in fresh environments, timed")
    rep.add_argument("log", type=Path)
    rep.add_argument("--first-round", type=int, default=0, help="leave out (run untimed) the rounds before it")
    rep.add_argument("--order", choices=["run", "by-slot"], default="run")
    alt = sub.add_parser("alternate", help="train again, replaying each round's logged calls right after it")
    alt.add_argument("config", type=Path)
    alt.add_argument("generations", type=int)
    alt.add_argument("log", type=Path)
    alt.add_argument("--first-round", type=int, default=1, help="leave out the rounds before it")
    inter = sub.add_parser("interleave", help="a logged round's calls, an engine's numpy work, and both in turns")
    inter.add_argument("config", type=Path)
    inter.add_argument("log", type=Path)
    inter.add_argument("round", type=int)
    inter.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "interleave":
        print(json.dumps(interleave(args.config, args.log, args.round, repeats=args.repeats)), flush=True)
    elif args.what == "record":
        print(json.dumps(record(args.config, args.generations, args.out)), flush=True)
    elif args.what == "replay":
        print(json.dumps(replay(args.log, first_round=args.first_round, order=args.order)), flush=True)
    else:
        found = alternate(args.config, args.generations, args.log, first_round=args.first_round)
        print(json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
