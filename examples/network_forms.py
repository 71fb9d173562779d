"""The ways of giving NEProblem a network (EvoTorch's guide): a string, a function, a class, a module.

``network_args`` are passed to the network; ``_network_constants`` offers values (here ``d``, the
input size) to strings and to the functions and classes whose signature names them.

Run: ``python examples/network_forms.py``
"""

import torch

from hpcne.neuroevolution import NEProblem


class CustomNE(NEProblem):
    def __init__(self, network: torch.nn.Module, k: int, d: int, network_args=None):
        super().__init__(
            objective_sense="max",  # This is a maximization task
            network=network,  # Pass the network to the super constructor
            network_args=network_args,
        )
        self._k = k
        self._d = d  # Store d (after super().__init__: the network is built when first needed)

    @property
    def _network_constants(self):
        return {"d": self._d}  # Pass self._d as 'd' to networks at instantiation

    def _evaluate_network(self, network: torch.nn.Module):
        samples = self.make_gaussian((self._k, self._d))
        return -float(network(samples).pow(2).mean())


def my_network(d: int):
    return torch.nn.Sequential(
        torch.nn.Linear(d, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 3),
    )


class MyNetwork(torch.nn.Module):
    def __init__(self, hidden_dim: int):
        super().__init__()
        self.lin1 = torch.nn.Linear(3, hidden_dim)
        self.act = torch.nn.Tanh()
        self.lin2 = torch.nn.Linear(hidden_dim, 1)

    def forward(self, data):
        return self.lin2(self.act(self.lin1(data)))


def main():
    problems = {
        "string with a constant": CustomNE("Linear(d, 32) >> Tanh() >> Linear(32, 1)", k=8, d=15),
        "function with a constant": CustomNE(my_network, k=8, d=15),
        "string with network_args": NEProblem(
            "max", "Linear(3, hidden_dim) >> Tanh() >> Linear(hidden_dim, 1)", network_args={"hidden_dim": 17}
        ),
        "class with network_args": NEProblem("max", MyNetwork, network_args={"hidden_dim": 17}),
        "module instance": NEProblem("max", torch.nn.Linear(3, 1)),
    }
    for name, problem in problems.items():
        print(f"{name}: {problem.solution_length} parameters\n{problem.network}\n")
    return problems


if __name__ == "__main__":
    main()
