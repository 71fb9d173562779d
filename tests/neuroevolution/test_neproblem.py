"""NEProblem: the network forms, network_args and _network_constants, fitness functions, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpcne import Solution
from hpcne.neuroevolution import NEProblem
from hpcne.neuroevolution.net import RNN, MultiLayered, NetParsingError, StatefulModule
from hpcne.tools import device_of, dtype_of


def sign_prediction_score(network: nn.Module) -> torch.Tensor:
    """The guide's fitness: +1 per correct sign of the sum of 3 inputs, -1 per wrong one, averaged."""
    samples = torch.randn((32, 3), dtype=dtype_of(network), device=device_of(network))
    sign_out = torch.sign(network(samples)[:, 0])
    sign_sum = torch.sign(samples.sum(dim=-1))
    return ((sign_sum == sign_out).float().sum() - (sign_sum != sign_out).float().sum()) / 32


class SignNE(NEProblem):
    """The guide's subclass form: samples from make_gaussian."""

    def _evaluate_network(self, network: nn.Module) -> torch.Tensor:
        samples = self.make_gaussian((32, 3))
        sign_out = torch.sign(network(samples)[:, 0])
        sign_sum = torch.sign(samples.sum(dim=-1))
        return (sign_sum == sign_out).float().sum() - (sign_sum != sign_out).float().sum()


class LazyNE(NEProblem):
    """The guide's CustomNE: ``self._d`` is set after ``super().__init__``."""

    def __init__(self, network, d: int, network_args: dict | None = None) -> None:
        super().__init__(objective_sense="max", network=network, network_args=network_args, seed=0)
        self._d = d

    @property
    def _network_constants(self) -> dict:
        return {"d": self._d}

    def _evaluate_network(self, network: nn.Module) -> float:
        return float(network(torch.ones(self._d)).sum())


class MethodConstantsNE(LazyNE):
    """``_network_constants`` written as a plain method (the seed text lost its decorator)."""

    def _network_constants(self) -> dict:  # type: ignore[override]
        return {"d": self._d}


class MyNetwork(nn.Module):
    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(3, hidden_dim)
        self.act = nn.Tanh()
        self.lin2 = nn.Linear(hidden_dim, 1)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(data)))


class DNetwork(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, 2)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        return self.lin(data)


def d_function(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 3))


def hidden_function(hidden_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(3, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 1))


@pytest.mark.parametrize(
    ("network", "network_args", "first_layer", "solution_length"),
    [
        ("Linear(3, hidden_dim) >> Tanh() >> Linear(hidden_dim, 1)", {"hidden_dim": 17}, (3, 17), 3 * 17 + 17 + 17 + 1),
        (MyNetwork, {"hidden_dim": 17}, (3, 17), 3 * 17 + 17 + 17 + 1),
        (hidden_function, {"hidden_dim": 5}, (3, 5), 3 * 5 + 5 + 5 + 1),
        (nn.Linear(3, 1), None, (3, 1), 4),
    ],
    ids=["string", "class", "function", "instance"],
)
def test_network_forms_with_network_args(network, network_args, first_layer, solution_length) -> None:
    problem = NEProblem("max", network, sign_prediction_score, network_args=network_args)
    first = next(m for m in problem.network.modules() if isinstance(m, nn.Linear))
    assert (first.in_features, first.out_features) == first_layer
    assert problem.solution_length == solution_length
    assert all(not p.requires_grad for p in problem.network.parameters())


def test_instance_network_is_copied() -> None:
    module = nn.Linear(3, 1)
    problem = NEProblem("max", module, sign_prediction_score)
    problem.parameterize_net(torch.full((4,), 7.0))
    assert not torch.equal(module.weight, torch.full((1, 3), 7.0))


@pytest.mark.parametrize("network", ["Linear(d, 32) >> Tanh() >> Linear(32, 1)", d_function, DNetwork])
@pytest.mark.parametrize("problem_class", [LazyNE, MethodConstantsNE])
def test_network_constants_set_after_super_init(problem_class, network) -> None:
    problem = problem_class(network, d=15)
    first = next(m for m in problem.network.modules() if isinstance(m, nn.Linear))
    assert first.in_features == 15
    batch = problem.generate_batch(3)
    problem.evaluate(batch)
    assert batch.is_evaluated


def test_functions_receive_only_the_constants_they_name() -> None:
    # DNetwork takes only d; hidden_dim goes through network_args; extra constants are not passed.
    problem = LazyNE(DNetwork, d=4)
    assert problem.network.lin.in_features == 4
    problem = LazyNE(lambda d, hidden_dim: nn.Linear(d, hidden_dim), d=6, network_args={"hidden_dim": 9})
    assert (problem.network.in_features, problem.network.out_features) == (6, 9)


def test_network_args_reach_functions_with_var_keywords() -> None:
    seen = {}

    def factory(**kwargs) -> nn.Module:
        seen.update(kwargs)
        return nn.Linear(kwargs["d"], 1)

    problem = LazyNE(factory, d=3, network_args={"extra": "x"})
    assert problem.solution_length == 4
    assert seen == {"d": 3, "extra": "x"}


def test_network_eval_func_evaluates_a_batch() -> None:
    torch.manual_seed(0)
    problem = NEProblem("max", "Linear(3, 1)", network_eval_func=sign_prediction_score, seed=1)
    good = torch.tensor([1.0, 1.0, 1.0, 0.0])  # sign(x1 + x2 + x3): always right
    batch = problem.generate_batch(2)
    batch.set_values(torch.stack([good, -good]))
    problem.evaluate(batch)
    assert batch.evals[:, 0].tolist() == [1.0, -1.0]


def test_subclass_with_make_gaussian_is_reproducible_and_neighbour_independent() -> None:
    def fitnesses(seed: int, values: torch.Tensor, rounds: int = 1) -> list[list[float]]:
        problem = SignNE("max", "Linear(3, 4) >> Tanh() >> Linear(4, 1)", seed=seed, initial_bounds=(-1, 1))
        batch = problem.generate_batch(len(values))
        out = []
        for _ in range(rounds):
            batch.set_values(values)
            problem.evaluate(batch)
            out.append(batch.evals[:, 0].tolist())
        return out

    values = SignNE("max", "Linear(3, 4) >> Tanh() >> Linear(4, 1)", initial_bounds=(-1, 1)).generate_batch(6).values
    first = fitnesses(3, values, rounds=2)
    assert fitnesses(3, values, rounds=2) == first  # same seed, same fitnesses
    assert first[0] != first[1]  # each round draws new samples
    assert fitnesses(4, values) != first[:1]  # another seed, other samples
    neighbours = values.clone()
    neighbours[[0, 2, 5]] = -neighbours[[0, 2, 5]]
    mixed = fitnesses(3, neighbours)[0]
    assert [mixed[i] for i in (1, 3, 4)] == [first[0][i] for i in (1, 3, 4)]


def test_parameterize_net_and_make_net() -> None:
    problem = NEProblem("min", "Linear(2, 3) >> Tanh() >> Linear(3, 1)", sign_prediction_score)
    x = torch.arange(problem.solution_length, dtype=torch.float32)
    net = problem.parameterize_net(x)
    assert net is problem.parameterize_net(x)  # the same template each time
    assert torch.equal(nn.utils.parameters_to_vector(net.parameters()), x)
    copy = problem.make_net(x)
    problem.parameterize_net(torch.zeros(problem.solution_length))
    assert torch.equal(nn.utils.parameters_to_vector(copy.parameters()), x)  # independent of the template
    batch = problem.generate_batch(1)
    batch.set_values(x[None])
    assert torch.equal(nn.utils.parameters_to_vector(problem.make_net(batch[0]).parameters()), x)  # a Solution
    with pytest.raises(ValueError, match=f"has {problem.solution_length} parameters but 3 values"):
        problem.parameterize_net(torch.zeros(3))


def test_parameterize_net_resets_recurrent_state() -> None:
    def score(network: nn.Module) -> float:
        return float(sum(network(torch.ones(1)).sum() for _ in range(3)))

    def network() -> nn.Module:
        return StatefulModule(MultiLayered(RNN(1, 2), nn.Linear(2, 1)))

    problem = NEProblem("max", network, score, initial_bounds=(-1, 1), seed=0)
    x = problem.generate_batch(1).values[0]
    batch = problem.generate_batch(3)
    batch.set_values(torch.stack([x, x, x]))
    problem.evaluate(batch)
    assert len(set(batch.evals[:, 0].tolist())) == 1  # no hidden state carried from one solution to the next


def test_generate_batch_respects_initial_bounds() -> None:
    problem = NEProblem("max", "Linear(5, 5)", sign_prediction_score, seed=0)
    values = problem.generate_batch(20).values
    assert values.shape == (20, 30)
    assert values.abs().max() <= 1e-5 and values.abs().max() > 0
    wide = NEProblem("max", "Linear(5, 5)", sign_prediction_score, initial_bounds=(2.0, 3.0)).generate_batch(5).values
    assert wide.min() >= 2.0 and wide.max() <= 3.0


def test_missing_fitness_is_explained() -> None:
    problem = NEProblem("max", "Linear(3, 1)")
    with pytest.raises(NotImplementedError, match="network_eval_func"):
        problem.evaluate(problem.generate_batch(2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_subbatches": 2, "subbatch_size": 3}, ValueError, "cannot both be set"),
        ({"num_actors": -1}, ValueError, "num_actors"),
        ({"num_actors": "lots"}, ValueError, "num_actors"),
        ({"num_actors": 1.5}, ValueError, "num_actors"),
        ({"num_subbatches": 0}, ValueError, "num_subbatches"),
        ({"subbatch_size": -2}, ValueError, "subbatch_size"),
        ({"num_gpus_per_actor": -1}, ValueError, "num_gpus_per_actor"),
        ({"seed": -5}, ValueError, "seed"),
        ({"actor_config": "gpu"}, TypeError, "actor_config"),
        ({"network_args": [1, 2]}, TypeError, "network_args"),
        ({"network_eval_func": 3}, TypeError, "network_eval_func"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        NEProblem("max", "Linear(3, 1)", **kwargs)


def test_bad_objective_sense_and_networks() -> None:
    with pytest.raises(ValueError, match="objective_sense"):
        NEProblem("up", "Linear(3, 1)")
    with pytest.raises(TypeError, match="network must be"):
        NEProblem("max", 42).network  # noqa: B018
    with pytest.raises(TypeError, match=r"must return a torch\.nn\.Module"):
        NEProblem("max", lambda: "Linear(3, 1)").network  # noqa: B018
    with pytest.raises(ValueError, match="no parameters"):
        NEProblem("max", "Tanh()").network  # noqa: B018


def test_valid_parallel_options_are_kept() -> None:
    problem = NEProblem(
        "max", "Linear(3, 1)", num_actors=4, actor_config={"num_gpus": 1}, num_gpus_per_actor=0.5, subbatch_size=8
    )
    assert (problem.num_actors, problem.actor_config, problem.num_gpus_per_actor) == (4, {"num_gpus": 1}, 0.5)
    assert (problem.subbatch_size, problem.num_subbatches) == (8, None)
    assert NEProblem("max", "Linear(3, 1)", num_actors="max").num_actors == "max"


def test_status_and_eval_dtype() -> None:
    problem = NEProblem("max", "Linear(3, 1)", sign_prediction_score, eval_dtype=torch.float32)
    batch = problem.generate_batch(2)
    assert batch.evals.dtype == torch.float32
    assert problem.status == {}


@pytest.mark.parametrize("network", ['Linear(3, 2) >> __import__("os").system("x")', "Linear(3, 2) >>", "Lnear(3, 2)"])
def test_a_bad_network_string_is_refused_at_construction(network: str) -> None:
    with pytest.raises(NetParsingError):
        NEProblem("max", network, sign_prediction_score)


def test_eval_data_columns_follow_the_fitness() -> None:
    class WithData(NEProblem):
        def _evaluate(self, solution: Solution) -> None:
            net = self.parameterize_net(solution.values)
            out = net(torch.ones(3))
            solution.set_evaluation(float(out.sum()), eval_data=[float(out.abs().max()), 7.0])

    problem = WithData("max", "Linear(3, 2)", eval_data_length=2, initial_bounds=(-1, 1), num_actors=None, seed=0)
    batch = problem.generate_batch(4)
    problem.evaluate(batch)
    assert batch.eval_shape == (4, 3) and batch.is_evaluated
    assert batch.access_evals(2).tolist() == [7.0] * 4
    assert (batch.evals[:, 1] >= batch.evals[:, 0].abs() / 2).all()


def test_gymne_refuses_a_bad_network_string_at_construction() -> None:
    from hpcne.neuroevolution import GymNE

    with pytest.raises(NetParsingError, match="attribute access"):
        GymNE("CartPole-v1", 'Linear(obs_length, 2) >> __import__("os").system("x")', num_actors=None)
