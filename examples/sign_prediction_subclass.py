"""Sign prediction with a NEProblem subclass that overrides ``_evaluate_network`` (EvoTorch's guide).

Random samples come from ``self.make_gaussian``, so every solution's fitness is reproducible from
the problem's seed. Evolved here with SNES; any searcher works the same.

Run: ``python examples/sign_prediction_subclass.py``
"""

import torch

from hpcne.algorithms import SNES
from hpcne.neuroevolution import NEProblem


class CustomNE(NEProblem):
    def __init__(self, network, seed=None):
        super().__init__(objective_sense="max", network=network, seed=seed)

    def _evaluate_network(self, network: torch.nn.Module) -> torch.Tensor:
        samples = self.make_gaussian((32, 3))  # Generate random gaussian vectors
        network_out = network(samples)  # Apply the network to the gaussian vectors
        sign_out = torch.sign(network_out[:, 0])  # Get the sign of the single output
        sign_sum = torch.sign(samples.sum(dim=-1))  # Get the sign of the sum of the inputs
        reward_gained = (sign_sum == sign_out).to(torch.float).sum()  # Number of times the network was correct
        reward_lost = (sign_sum != sign_out).to(torch.float).sum()  # Number of times the network was incorrect
        return reward_gained - reward_lost


def main(generations: int = 50, seed: int = 1):
    problem = CustomNE("Linear(3, 32) >> Tanh() >> Linear(32, 1)", seed=seed)
    searcher = SNES(problem, popsize=20, stdev_init=1.0)
    searcher.run(generations)
    print("best fitness (out of 32):", searcher.status["best_eval"])
    trained_network = problem.parameterize_net(searcher.status["center"])
    print(trained_network(torch.tensor([[1.0, 2.0, 3.0]])))
    return problem, searcher


if __name__ == "__main__":
    main()
