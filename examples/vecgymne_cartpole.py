"""Evolve a CartPole-v1 policy with VecGymNE and PGPE (an EvoTorch script with ``hpcne`` imports).

Each process steps its share of the population on one gymnasium vector environment (CartPole-v1's
own numpy ``CartPoleVectorEnv``), with one batched policy call per step. Run:

    python examples/vecgymne_cartpole.py                       # in this process
    python examples/vecgymne_cartpole.py --workers 2           # a local pool of 2 workers
    mpiexec -n 3 python -m mpi4py examples/vecgymne_cartpole.py  # one vector env per rank
"""

import sys

from hpcne.algorithms import PGPE
from hpcne.neuroevolution import VecGymNE


def main(generations: int = 100, popsize: int = 50, num_actors=None, target: float = 475.0):
    problem = VecGymNE(
        env="CartPole-v1",
        network="Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)",
        observation_normalization=True,
        num_actors=num_actors,
        seed=0,
    )
    searcher = PGPE(
        problem,
        popsize=popsize,
        center_learning_rate=0.2,
        stdev_learning_rate=0.1,
        radius_init=4.5,
        optimizer="clipup",
    )
    score = float("-inf")
    for _ in range(generations):
        searcher.step()
        status = searcher.status
        score = problem.run(problem.to_policy(status["center"]), num_episodes=1)["cumulative_reward"]
        print(f"iter {status['iter']}: mean {status['mean_eval']:.1f}, best {status['best_eval']:.1f}, center {score}")
        if score >= target:
            break
    problem.kill_actors()
    return problem, searcher, score


if __name__ == "__main__":
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else None
    main(num_actors=workers)
