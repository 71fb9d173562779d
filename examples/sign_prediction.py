"""Sign prediction with NEProblem and PGPE: EvoTorch's neuroevolution guide, with ``hpcne`` imports.

A network maps a vector of length 3 to a scalar whose sign should be the sign of the sum of the
inputs; a network earns +1 per correct sign and -1 per wrong one on 32 random samples.

Run: ``python examples/sign_prediction.py``
"""

import torch

from hpcne.algorithms import PGPE
from hpcne.logging import PandasLogger
from hpcne.neuroevolution import NEProblem
from hpcne.tools import device_of, dtype_of


def sign_prediction_score(network: torch.nn.Module):
    samples = torch.randn((32, 3), dtype=dtype_of(network), device=device_of(network))  # 32 random gaussian vectors
    network_out = network(samples)  # Apply the network to the gaussian vectors
    sign_out = torch.sign(network_out[:, 0])  # Get the sign of the single output
    sign_sum = torch.sign(samples.sum(dim=-1))  # Get the sign of the sum of the inputs
    reward_gained = (sign_sum == sign_out).to(torch.float).sum()  # Number of times the network was correct
    reward_lost = (sign_sum != sign_out).to(torch.float).sum()  # Number of times the network was incorrect
    return (reward_gained - reward_lost) / 32


def main(generations: int = 50):
    sign_prediction_problem = NEProblem(
        objective_sense="max",  # The objective sense -- we wish to maximize the sign_prediction_score
        network=torch.nn.Linear(3, 1),  # The network is a Linear layer mapping 3 inputs to 1 output
        network_eval_func=sign_prediction_score,  # Networks will be evaluated according to sign_prediction_score
    )

    searcher = PGPE(
        sign_prediction_problem,
        popsize=50,
        radius_init=2.25,
        center_learning_rate=0.2,
        stdev_learning_rate=0.1,
    )
    logger = PandasLogger(searcher)
    searcher.run(generations)
    progress = logger.to_dataframe()
    print(progress["mean_eval"].tail())

    trained_network = sign_prediction_problem.parameterize_net(searcher.status["center"])
    print(trained_network(torch.tensor([[1.0, 2.0, 3.0]])))  # a positive sum: should be positive
    print(trained_network(torch.tensor([[-1.0, 1.0, -1.0]])))  # a negative sum: should be negative
    return sign_prediction_problem, searcher, progress


if __name__ == "__main__":
    main()
