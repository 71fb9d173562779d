"""Evolve a CartPole-v1 policy with GymNE and PGPE (an EvoTorch script with ``hpcne`` imports).

Run: ``python examples/gymne_cartpole.py`` (evaluates on all cores; ``--visualize`` shows the
result in a window, or writes ``CartPole-v1-rollout.gif`` without a display).
"""

import sys

from hpcne.algorithms import PGPE
from hpcne.neuroevolution import GymNE


def main(generations: int = 30, popsize: int = 50, num_actors="max", visualize: bool = False):
    problem = GymNE(
        env="CartPole-v1",
        network="Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)",
        observation_normalization=True,
        num_actors=num_actors,
        seed=0,
    )
    searcher = PGPE(
        problem,
        popsize=popsize,
        center_learning_rate=0.1,
        stdev_learning_rate=0.1,
        radius_init=0.3,
    )
    for _ in range(generations):
        searcher.step()
        status = searcher.status
        print(f"iter {status['iter']}: mean {status['mean_eval']:.1f}, best {status['best_eval']:.1f}")

    policy = problem.to_policy(searcher.status["center"])
    print(problem.run(policy, num_episodes=3))
    if visualize:
        problem.visualize(policy)
    problem.kill_actors()
    return problem, searcher


if __name__ == "__main__":
    main(visualize="--visualize" in sys.argv)
