"""hpcne's time outside the evaluations: an example's training run whose evaluations cost nothing.

The example's `Trainer` runs as ``hpcne train`` runs it (searcher, results file, checkpoints,
progress), but every evaluation round returns random fitnesses at once, and the best solution
improves every generation (the learning phase, when ``/best`` is rewritten most). What is left
is what a generation costs beyond its rollouts: sampling and the searcher update, logging,
the best solution, checkpoints::

    python -m benchmarks.outside examples/cartpole-pgpe.toml --generations 300
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["outside_cost"]


def outside_cost(config: Path, generations: int) -> dict[str, Any]:
    """Milliseconds per generation of ``config``'s run with free evaluations, over ``generations``."""
    from hpcne.config import RunConfig, load_toml
    from hpcne.core import EvalResult
    from hpcne.run import Trainer, build_problem, build_searcher

    rng = np.random.default_rng(0)
    best = 0.0

    def fitness(count: int) -> np.ndarray:
        nonlocal best
        best += 1.0
        values = rng.normal(size=count)
        values[0] = best
        return values

    class FreeRuntime:
        """Stands in for the problem's runtime: fitnesses at once."""

        compute_seconds = 0.0

        def evaluate(self, values: np.ndarray, eval_round: int) -> EvalResult:
            return EvalResult(fitness(len(values)))

        def evaluate_sampled(self, sample: Any, popsize: int, replica: Any) -> EvalResult:
            return EvalResult(fitness(popsize))

    with tempfile.TemporaryDirectory(prefix="hpcne-outside-") as run_dir:
        values = load_toml(config) | {"generations": generations, "target_reward": None, "run_dir": run_dir}
        run_config = RunConfig.from_dict(values | {"workers": None})
        problem = build_problem(run_config)
        runtime = FreeRuntime()

        def evaluate_round(evaluate: Callable[[Any], EvalResult]) -> EvalResult:
            problem._eval_round += 1
            return evaluate(runtime)

        problem._evaluate_round = evaluate_round  # type: ignore[method-assign]
        problem._evaluate_aside = lambda values, eval_round, episodes: fitness(len(values))  # type: ignore[method-assign]
        trainer = Trainer(
            run_config, problem, Path(run_dir), searcher=build_searcher(run_config, problem), out=io.StringIO()
        )
        started = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - started
        problem.kill_actors()
    ran = trainer.generation  # as asked, unless the run stopped early (a bug this shows)
    return {"config": str(config), "generations": ran, "ms_per_generation": round(1e3 * seconds / ran, 3)}


def main() -> None:
    """``CONFIG [--generations N]``: one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outside", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--generations", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(outside_cost(args.config, args.generations)), flush=True)


if __name__ == "__main__":
    main()
