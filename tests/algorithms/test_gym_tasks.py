"""PGPE with ClipUp learns control tasks with the settings of the example configs.

The settings are those of ``examples/cartpole-pgpe.toml`` and ``examples/pendulum-pgpe.toml``
(seed 0: CartPole is solved at generation ~10, Pendulum's center reaches -250 at generation 110);
a change that breaks learning (a sign, a ranking, the optimizer, observation normalization)
fails here within the stated budget.
"""

from __future__ import annotations

from pathlib import Path

from hpcne.algorithms import SearchAlgorithm
from hpcne.config import RunConfig, load_toml
from hpcne.neuroevolution import GymNE
from hpcne.run import build_problem, build_searcher

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def searcher_from_example(name: str) -> tuple[GymNE, SearchAlgorithm]:
    """The problem and searcher of an example config, evaluated in this process."""
    config = RunConfig.from_dict(load_toml(EXAMPLES / name), source=name)
    config.workers = None
    problem = build_problem(config)
    return problem, build_searcher(config, problem)


def center_score(problem: GymNE, searcher: SearchAlgorithm, episodes: int = 10) -> float:
    """Mean return of the center policy (with the training's observation statistics) over ``episodes``."""
    return problem.run(problem.to_policy(searcher.status["center"]), num_episodes=episodes)["cumulative_reward"]


def generations_to_reach(
    problem: GymNE, searcher: SearchAlgorithm, target: float, budget: int, every: int
) -> int | None:
    """The first generation (checked every ``every``) whose center scores at least ``target``, or None."""
    for generation in range(1, budget + 1):
        searcher.step()
        if generation % every == 0 and center_score(problem, searcher) >= target:
            return generation
    return None


def test_pgpe_with_clipup_solves_cartpole_within_50_generations() -> None:
    problem, searcher = searcher_from_example("cartpole-pgpe.toml")
    solved_at = generations_to_reach(problem, searcher, 475.0, budget=50, every=1)
    assert solved_at is not None, f"center scored {center_score(problem, searcher):.1f} after 50 generations"


def test_pgpe_with_clipup_reaches_minus_250_on_pendulum_within_200_generations() -> None:
    problem, searcher = searcher_from_example("pendulum-pgpe.toml")
    reached_at = generations_to_reach(problem, searcher, -250.0, budget=200, every=10)
    assert reached_at is not None, f"center scored {center_score(problem, searcher):.1f} after 200 generations"
