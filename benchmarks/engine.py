"""hpcne's own cost per environment step: the rollout engine around environments whose steps cost nothing.

For an example config, the engine runs the example's policy, observation normalization and
statistics over ``_FreeEnv`` environments with the example's spaces (the stand-in that the
automatic ``rollout_batch_size`` is measured with), at each slot count asked for. What one
stand-in step costs alone is taken off. The figure is what hpcne adds to every real step: the
policy call, normalization, statistics and the engine's bookkeeping, per lockstep iteration
and per slot::

    python -m benchmarks.engine examples/cartpole-pgpe.toml --slots 5,32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["engine_cost"]


def engine_cost(config: Path, slots: int, *, calls: int = 500, repeats: int = 5) -> dict[str, Any]:
    """Microseconds per step of the engine alone for ``config``'s problem at ``slots`` slots (best of ``repeats``).

    It is timed as the automatic ``rollout_batch_size`` times it (``GymNE._engine_timer``), over
    ``calls`` lockstep iterations of ``slots`` steps each.
    """
    from hpcne.config import RunConfig, load_toml
    from hpcne.neuroevolution.gymne import _FreeEnv
    from hpcne.run import build_problem

    problem = build_problem(RunConfig.from_dict(load_toml(config)))
    engine = problem._engine_timer(slots, calls)
    per_step = min(engine() for _ in range(repeats)) / slots
    env = _FreeEnv(problem._obs_space, problem._act_space)
    action = problem._act_space.sample()
    started = time.perf_counter()
    for _ in range(100_000):
        env.step(action)
    stand_in = (time.perf_counter() - started) / 100_000
    return {"config": str(config), "slots": slots, "us_per_step": round(1e6 * (per_step - stand_in), 3)}


def main() -> None:
    """``CONFIG [--slots 5,32]``: one JSON line per slot count."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--slots", default="1,4,16,32", help="comma-separated slot counts")
    args = parser.parse_args()
    for slots in (int(s) for s in args.slots.split(",")):
        print(json.dumps(engine_cost(args.config, slots)), flush=True)


if __name__ == "__main__":
    main()
