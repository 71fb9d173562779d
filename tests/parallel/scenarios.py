"""Scenarios that the parallel tests run in a subprocess, under ``mpiexec`` or as a plain script.

Usage: ``python scenarios.py NAME`` or ``mpiexec -n 3 python -m mpi4py scenarios.py NAME``.
The failing ones fail on the last MPI rank (or in a pool worker), on solution ``BAD`` where
a solution can be singled out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import hpcne.parallel  # noqa: F401 -- under mpiexec: initialize MPI early, abort the job on a failure
from hpcne.core import Problem
from hpcne.neuroevolution import GymNE, NEProblem

POPSIZE = 12
BAD = 9  # with 12 solutions on 3 ranks, rows 8..11 are evaluated by rank 2
MARK = 1000.0  # the first parameter of the bad solution


def rank_and_size() -> tuple[int, int]:
    """This process's MPI rank and the job size from the launcher's variables ((0, 1) outside MPI)."""
    for rank, size in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        if rank in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return 0, 1


def on_last_rank() -> bool:
    """Whether this is the last MPI rank, or a pool worker (never the coordinator of a pool)."""
    rank, size = rank_and_size()
    if size > 1:
        return rank == size - 1
    parent = os.environ.get("SCENARIO_PARENT")
    return parent is not None and parent != str(os.getpid())


def population(width: int, scenario: str) -> torch.Tensor:
    """The solutions a scenario evaluates: zeros, and a marked (or for "nan", NaN) solution ``BAD``."""
    values = torch.zeros(POPSIZE, width)
    values[BAD, 0] = MARK
    if scenario == "nan":
        values[BAD] = float("nan")
    return values


def raising_eval(net: torch.nn.Module) -> float:
    first = float(next(net.parameters()).reshape(-1)[0])
    if first == MARK:
        raise ArithmeticError("the fitness function of the bad solution raised on purpose")
    return first


def killing_eval(net: torch.nn.Module) -> float:
    if on_last_rank():
        os.kill(os.getpid(), signal.SIGKILL)
    return 0.0


class BadStepEnv(gym.Wrapper):
    """CartPole whose step raises on the last rank (or in a pool worker)."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action: Any) -> Any:
        if on_last_rank():
            raise OSError("the simulator lost its connection (raised on purpose)")
        return self.env.step(action)


class HangingEnv(gym.Wrapper):
    """CartPole whose step never returns on the last rank (or in a pool worker): a hung simulator."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action: Any) -> Any:
        if on_last_rank():
            time.sleep(3600)
        return self.env.step(action)


class FaultyEnv(gym.Wrapper):
    """CartPole that misbehaves at step 3 on the last rank (or in a pool worker), in the way ``fault`` names."""

    def __init__(self, fault: str) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.fault, self.steps = fault, 0

    def step(self, action: Any) -> Any:
        self.steps += 1
        if self.steps == 3 and on_last_rank():
            FAULTS[self.fault]()
        return self.env.step(action)


def _hold_the_gil() -> None:
    import re

    re.match(r"(a+)+$", "a" * 60 + "b")  # catastrophic backtracking in C: the GIL is held for hours


FAULTS: dict[str, Callable[[], object]] = {
    "exit": lambda: sys.exit(0),  # SystemExit(0): must not end the job quietly
    "interrupt": lambda: (_ for _ in ()).throw(KeyboardInterrupt("raised by the environment")),
    "os_exit": lambda: os._exit(3),
    "stop": lambda: os.kill(os.getpid(), signal.SIGSTOP),
    "gil": _hold_the_gil,
}


def faulty(fault: str) -> Callable[[], Problem]:
    """A scenario whose environment misbehaves with ``fault``."""
    # rollout_batch_size: no timing of a step before the rollouts, so that the fault meets a solution
    env = lambda: FaultyEnv(fault)  # noqa: E731
    return lambda: GymNE(env, "Linear(obs_length, act_length)", seed=1, num_actors=2, rollout_batch_size=2)


def scenario_raise() -> Problem:
    return NEProblem("max", "Linear(2, 1)", raising_eval, seed=1, num_actors=2)


def scenario_kill() -> Problem:
    return NEProblem("max", "Linear(2, 1)", killing_eval, seed=1, num_actors=2)


def scenario_bad_step() -> Problem:
    return GymNE(BadStepEnv, "Linear(obs_length, act_length)", seed=1, num_actors=2)


def scenario_hang() -> Problem:
    return GymNE(HangingEnv, "Linear(obs_length, act_length)", seed=1, num_actors=2)


def scenario_nan() -> Problem:
    return GymNE("Pendulum-v1", "Linear(obs_length, act_length)", seed=1, num_actors=2)


def scenario_build() -> Problem:
    rank, size = rank_and_size()
    env = "NoSuchEnv-v0" if rank == size - 1 and size > 1 else "CartPole-v1"
    return GymNE(env, "Linear(obs_length, act_length)", seed=1, num_actors=2)


def scenario_build_unread() -> Problem:
    """As "build", with the launcher's forwarding process (this rank's parent) stopped for a second
    just before the last rank reports its error, so that the rank would abort while nothing reads its
    report: the race that once lost a failing rank's whole report. The other ranks are kept out of
    MPI meanwhile, as while they build their problem, where the report was lost most often.
    """
    if not on_last_rank():
        time.sleep(10)  # the last rank's abort ends this sleep
        return scenario_build()
    report = sys.excepthook

    def stop_the_launcher_then_report(*args: Any) -> None:
        launcher = os.getppid()
        os.kill(launcher, signal.SIGSTOP)
        subprocess.Popen(["sh", "-c", f"sleep 1; kill -CONT {launcher}"])
        report(*args)

    sys.excepthook = stop_the_launcher_then_report
    return scenario_build()


def scenario_lazy_build() -> Problem:
    """A network that only the last rank cannot build (networks are built on first use)."""

    def network() -> torch.nn.Module:
        if on_last_rank():
            raise ImportError("this rank lacks the module that defines the network (raised on purpose)")
        return torch.nn.Linear(2, 1)

    return NEProblem("max", network, raising_eval, seed=1, num_actors=2)


CARTPOLE_WIDTH = 4 * 2 + 2  # Linear(obs_length, act_length)
PENDULUM_WIDTH = 3 * 1 + 1
SCENARIOS: dict[str, tuple[Callable[[], Problem], int]] = {
    "raise": (scenario_raise, 3),
    "kill": (scenario_kill, 3),
    "bad_step": (scenario_bad_step, CARTPOLE_WIDTH),
    "hang": (scenario_hang, CARTPOLE_WIDTH),
    "nan": (scenario_nan, PENDULUM_WIDTH),
    "build": (scenario_build, CARTPOLE_WIDTH),
    "build_unread": (scenario_build_unread, CARTPOLE_WIDTH),
    "lazy_build": (scenario_lazy_build, 3),
    **{fault: (faulty(fault), CARTPOLE_WIDTH) for fault in FAULTS},
}


def main(name: str) -> None:
    os.environ["SCENARIO_PARENT"] = str(os.getpid())
    build, width = SCENARIOS[name]
    fitness = build().evaluate_values(population(width, name))
    print(json.dumps({"fitness": np.asarray(fitness).tolist()}))


if __name__ == "__main__":
    main(sys.argv[1])
