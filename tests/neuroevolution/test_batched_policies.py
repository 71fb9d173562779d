"""Batched policies: a row's output depends only on its own parameters and observation; every
backend (numpy, torch, vmap, loop) agrees with the per-solution forward and the per-solution path."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
from ne_envs import CARTPOLE_NET
from ne_envs import GYM_CONFIGS as SHARED
from torch import nn

from hpcne.neuroevolution import GymNE
from hpcne.neuroevolution.net import RNN, Clip, StatefulModule, str_to_net
from hpcne.neuroevolution.policies import (
    POLICY_BACKENDS,
    ModuleLoop,
    NotBatchable,
    NumpyMLP,
    TorchMLP,
    VmapPolicy,
    choose_policy_backend,
    make_batched_policy,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
# A numpy deprecation in a policy's hot path (a positional ``out`` for np.maximum, say) fails here, not later.
pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")

NETWORKS = {
    "cartpole": "Linear(4, 16) >> Tanh() >> Linear(16, 2)",
    "cheetah": "Linear(17, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, 6)",
    "activations": "Linear(5, 7) >> ReLU() >> Linear(7, 7) >> Sigmoid() >> Linear(7, 3, bias=False) >> Hardtanh()",
    "leading-activation": "Tanh() >> Linear(3, 4) >> Clip(-0.5, 0.5) >> Identity() >> Linear(4, 2)",
    "wide-then-narrow": "Linear(12, 6) >> Tanh() >> Linear(6, 2)",  # a BLAS layer, then a column-by-column one
}


def random_rows(net: nn.Module, n: int, in_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    length = sum(p.numel() for p in net.parameters())
    in_features = in_features or next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features
    return rng.normal(size=(n, length)).astype(np.float32), 3 * rng.normal(size=(n, in_features)).astype(np.float32)


@pytest.mark.parametrize("name", NETWORKS)
def test_numpy_mlp_rows_are_independent_of_slot_and_slot_count(name: str) -> None:
    net = str_to_net(NETWORKS[name])
    params, obs = random_rows(net, 5)
    reference = {}
    for slots in (1, 2, 7, 32):
        policy = make_batched_policy(net, slots)
        assert isinstance(policy, NumpyMLP)
        order = [(slot * 3) % 5 for slot in range(slots)]  # solutions land in various slots
        for slot, k in enumerate(order):
            policy.load(slot, params[k])
        batch = obs[order].copy()
        out = policy(batch).copy()
        assert np.array_equal(batch, obs[order])  # the observations are not modified in place
        for slot, k in enumerate(order):
            reference.setdefault(k, out[slot])
            assert np.array_equal(out[slot], reference[k])
        for rows in ([0], [1, slots - 1], list(range(slots))):  # only the busy rows: row by row when few
            rows = sorted(set(r for r in rows if r < slots))
            out = policy(batch, rows)
            assert np.array_equal(batch, obs[order])
            assert all(np.array_equal(out[r], reference[order[r]]) for r in rows)
    for k, row in reference.items():  # and they agree with torch up to rounding
        nn.utils.vector_to_parameters(torch.from_numpy(params[k]), net.parameters())
        with torch.no_grad():
            expected = net(torch.from_numpy(obs[k])).numpy()
        assert np.allclose(row, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_numpy_mlp_follows_an_input_array_rewritten_in_place(name: str) -> None:
    """The stacked path's calls are bound to the input array once (the engine rewrites one array at every
    step): each call reads its current contents, and another array with the same contents gives the same bits."""
    net = str_to_net(NETWORKS[name])
    params, obs = random_rows(net, 8)
    policy = make_batched_policy(net, 8)
    for slot in range(8):
        policy.load(slot, params[slot])
    fresh = [policy(obs[[(k + shift) % 8 for k in range(8)]].copy()).copy() for shift in range(3)]
    x = np.empty_like(obs)
    for shift, expected in enumerate(fresh):
        x[:] = obs[[(k + shift) % 8 for k in range(8)]]
        assert np.array_equal(policy(x), expected)
    assert np.array_equal(policy(x.copy()), fresh[-1])  # and back to another array


def test_module_loop_for_other_networks_and_errors_name_the_slot() -> None:
    net = StatefulModule(str_to_net("RNN(3, 4) >> Linear(4, 2)"))  # as GymNE hands recurrent networks over
    policy = make_batched_policy(net, 3)
    assert isinstance(policy, ModuleLoop)
    params, obs = random_rows(net, 3, in_features=3)
    for slot in range(3):
        policy.load(slot, params[slot])
    first = policy(obs).copy()
    assert not np.array_equal(policy(obs), first)  # the hidden state moved on
    for slot in range(3):
        policy.reset(slot)
    assert np.array_equal(policy(obs), first)
    policy.reset(1)
    assert np.array_equal(policy(obs, [1])[1], first[1])  # only the requested row is computed
    with pytest.raises(ValueError, match="RNN expected inputs") as info:
        policy(np.zeros((3, 5), np.float32))
    assert info.value.hpcne_slot == 0


def test_make_batched_policy_choices() -> None:
    assert isinstance(make_batched_policy(str_to_net("Linear(2, 2)"), 2, kind="module"), ModuleLoop)
    assert isinstance(make_batched_policy(nn.Sequential(nn.Linear(2, 2), Clip(-1, 1)), 2), NumpyMLP)
    with pytest.raises(ValueError, match="not one"):
        make_batched_policy(nn.Sequential(RNN(2, 2)), 2, kind="numpy")
    with pytest.raises(ValueError, match="policy kind"):
        make_batched_policy(nn.Linear(2, 2), 2, kind="fast")


# ------------------------------------------------------------------ every backend, one network at a time
class TwoHeads(nn.Module):
    """A custom module with a nonstandard forward: two branches, a buffer, a scale, a clamp, a (1, n) output."""

    def __init__(self, obs_length: int = 4, act_length: int = 2) -> None:
        super().__init__()
        self.a = nn.Linear(obs_length, 8)
        self.b = nn.Linear(obs_length, 8, bias=False)
        self.out = nn.Linear(16, act_length)
        self.scale = nn.Parameter(torch.ones(act_length))
        self.register_buffer("offset", torch.linspace(-1, 1, obs_length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([torch.tanh(self.a(x - self.offset)), torch.relu(self.b(x)) * 0.5], dim=-1)
        return (self.out(h) * self.scale).clamp(-2.0, 2.0).view(1, -1)


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


class Sticky(nn.Module):
    """Keeps a tensor between calls in a plain attribute (and has no reset method)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.previous: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if self.previous is not None:
            y = y + self.previous
        self.previous = y
        return y


class Resettable(nn.Module):
    """A layer with its own reset(): state that only the loop backend carries."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x) * self.calls


def _string(text: str) -> Callable[[], nn.Module]:
    return lambda: str_to_net(text)


def _recurrent(text: str) -> Callable[[], nn.Module]:
    """A recurrent network as GymNE hands it to the policies: wrapped to keep its hidden state."""
    return lambda: StatefulModule(str_to_net(text))


# name -> (factory, obs_length, is a Linear/activation stack)
NET_CASES = {
    "mlp-64": (_string("Linear(4, 64) >> Tanh() >> Linear(64, 2)"), 4, True),
    "activations": (_string(NETWORKS["activations"]), 5, True),
    "leading-activation": (_string(NETWORKS["leading-activation"]), 3, True),
    "custom-module": (TwoHeads, 4, False),
    "hpcne-layers": (
        _string("Linear(4, 6) >> Slice(1, 4) >> Apply('x ** 2') >> Linear(3, 2) >> Clip(-1, 1)"),
        4,
        False,
    ),
    "rnn": (_recurrent("RNN(4, 5) >> Linear(5, 2)"), 4, False),
    "lstm": (_recurrent("LSTM(4, 3) >> Tanh() >> Linear(3, 2)"), 4, False),
}
POLICY_TYPES = {"numpy": NumpyMLP, "torch": TorchMLP, "vmap": VmapPolicy, "loop": ModuleLoop}


def per_solution(net: nn.Module, params: np.ndarray) -> nn.Module:
    """The per-solution forward: a copy of ``net`` holding ``params``, in a fresh state."""
    module = copy.deepcopy(net)
    device = next(net.parameters()).device
    nn.utils.vector_to_parameters(torch.from_numpy(params).to(device), module.parameters())
    return module


def forward(module: nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(obs).to(next(module.parameters()).device)).reshape(-1).cpu().numpy()


def drive(policy, net: nn.Module, obs_length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Call ``policy`` the way the rollout engine does: masked rows (finished episodes), then new jobs.

    Returns (batched, per-solution) output pairs for every busy row of every step.
    """
    rng = np.random.default_rng(1)
    slots = policy.slots
    params = rng.normal(size=(slots + 2, sum(p.numel() for p in net.parameters()))).astype(np.float32)
    reference: dict[int, nn.Module] = {}

    def start(slot: int, solution: int) -> None:
        policy.load(slot, params[solution])
        policy.reset(slot)
        reference[slot] = per_solution(net, params[solution])

    for slot in range(slots):
        start(slot, (slot * 5 + 3) % slots)  # solutions land in various slots
    last = slots - 1
    schedule = [None, [1, last - 1], [0, 1, last - 1, last], [0, 1, last]]
    pairs = []
    for step, rows in enumerate(schedule):
        if step == 2:  # slots 0 and `last` finished their episodes and take new solutions
            start(0, slots)
            start(last, slots + 1)
        obs = (2 * rng.normal(size=(slots, obs_length))).astype(np.float32)
        before = obs.copy()
        out = policy(obs, rows).copy()
        assert np.array_equal(obs, before)  # the observations are not modified in place
        for r in range(slots) if rows is None else rows:
            pairs.append((out[r], forward(reference[r], obs[r])))
    return pairs


@pytest.mark.parametrize("backend", ["numpy", "torch", "vmap", "loop"])
@pytest.mark.parametrize("name", NET_CASES)
def test_every_backend_matches_the_per_solution_forward_with_masked_rows(name: str, backend: str) -> None:
    factory, obs_length, mlp = NET_CASES[name]
    net = factory().requires_grad_(False)
    if backend in ("numpy", "torch") and not mlp:
        with pytest.raises(NotBatchable, match="Linear/activation stacks"):
            make_batched_policy(net, 6, kind=backend, obs_length=obs_length)
        return
    policy = make_batched_policy(net, 6, kind=backend, obs_length=obs_length)
    assert isinstance(policy, POLICY_TYPES[backend])
    pairs = drive(policy, net, obs_length)
    assert len(pairs) == 6 + 2 + 4 + 3
    for got, expected in pairs:
        if backend == "loop":
            assert np.array_equal(got, expected)  # the same module call: the same bits
        else:  # numpy's BLAS, torch's bmm: equal up to float32 rounding only
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_recurrent_state_is_per_slot_and_reset_clears_it() -> None:
    net = str_to_net("LSTM(4, 3) >> Linear(3, 2)").requires_grad_(False)
    policy = make_batched_policy(net, 3, kind="vmap")  # a bare recurrent network gets its state wrapper
    assert isinstance(policy, VmapPolicy)
    params = np.random.default_rng(0).normal(size=(3, sum(p.numel() for p in net.parameters()))).astype(np.float32)
    for slot in range(3):
        policy.load(slot, params[slot])
        policy.reset(slot)
    obs = np.ones((3, 4), np.float32)
    first = policy(obs).copy()
    second = policy(obs).copy()
    assert not np.allclose(first, second)  # the hidden state moved on
    policy.reset(1)
    third = policy(obs).copy()
    np.testing.assert_array_equal(third[1], first[1])  # slot 1 starts over, the others go on
    assert not np.allclose(third[[0, 2]], second[[0, 2]])


def test_the_automatic_choice() -> None:
    cases = {name: (factory(), obs_length) for name, (factory, obs_length, _) in NET_CASES.items()}
    for name, (net, obs_length) in cases.items():
        mlp = NET_CASES[name][2]
        # CPU: only the backends that give the same bits for every number of slots
        assert choose_policy_backend(net, obs_length=obs_length) == ("numpy" if mlp else "loop")
        assert isinstance(make_batched_policy(net, 4, obs_length=obs_length), NumpyMLP if mlp else ModuleLoop)
        # GPU: batched matrix products for MLPs, vmap for what it can batch
        assert choose_policy_backend(net, "cuda", obs_length) == ("torch" if mlp else "vmap")
    for module in (Branchy(), Sticky(), Resettable()):
        assert choose_policy_backend(module, "cuda", 4) == "loop"  # vmap cannot: back to the loop
        assert isinstance(make_batched_policy(module, 4), ModuleLoop)


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        (Branchy(), "data-dependent control flow"),
        (Sticky(), r"Sticky\.previous keeps between calls"),
        (Resettable(), r"Resettable \(a layer with a reset\(\) method"),
        (nn.Sequential(nn.Tanh(), Sticky()), r"Sticky\.previous \(submodule '1'\)"),
    ],
)
def test_vmap_refuses_what_it_cannot_batch(module: nn.Module, reason: str) -> None:
    with pytest.raises(NotBatchable, match=reason):
        make_batched_policy(module, 4, kind="vmap", obs_length=4)


def test_backend_names() -> None:
    assert POLICY_BACKENDS == ("auto", "numpy", "torch", "vmap", "loop")
    with pytest.raises(ValueError, match="'auto', 'numpy', 'torch', 'vmap', 'loop'; got 'gpu'"):
        make_batched_policy(nn.Linear(2, 2), 2, kind="gpu")


# ------------------------------------------------------------------ GymNE: every backend, same results
GYM_CONFIGS = {
    **{name: SHARED[name] for name in ("cartpole-obsnorm-2-episodes", "pendulum-noise-obsnorm")},
    "pendulum-custom-module": dict(env="Pendulum-v1", network=TwoHeads, episode_length=20),
    "cartpole-recurrent": SHARED["cartpole-recurrent"],
}


def evaluate(
    config: dict, values: torch.Tensor, rounds: int = 2, **kwargs
) -> tuple[np.ndarray, tuple, np.ndarray | None]:
    """Fitnesses over rounds, the (interaction, episode) counts and the observation statistics."""
    problem = GymNE(**{**config, "num_actors": None, "seed": 5, **kwargs})
    batch = problem.generate_batch(len(values))
    fitnesses = []
    for _ in range(rounds):
        batch.set_values(values)
        problem.evaluate(batch)
        fitnesses.append(batch.evals[:, 0].tolist())
    stats = problem.get_observation_stats().pack() if problem.observation_normalization else None
    return np.array(fitnesses), (problem.interaction_count, problem.episode_count), stats


@pytest.mark.parametrize("backend", ["numpy", "torch", "vmap", "loop"])
@pytest.mark.parametrize("name", GYM_CONFIGS)
def test_gymne_gives_the_per_solution_results_with_every_backend(name: str, backend: str) -> None:
    config = GYM_CONFIGS[name]
    mlp = isinstance(config["network"], str) and "RNN" not in config["network"]
    if backend in ("numpy", "torch") and not mlp:
        with pytest.raises(ValueError, match=f"policy_backend='{backend}'"):
            GymNE(**config, num_actors=None, policy_backend=backend)
        return
    values = 0.5 * torch.randn(
        (7, GymNE(**config, num_actors=None).solution_length), generator=torch.Generator().manual_seed(0)
    )
    reference, counts, reference_stats = evaluate(config, values, rollout_batch_size=1)  # the per-solution path
    assert len(set(reference[0])) > 1  # the policies do differ
    same_backend = None
    for size in (1, 4, 32):
        fitnesses, its_counts, stats = evaluate(config, values, rollout_batch_size=size, policy_backend=backend)
        assert its_counts == counts
        if backend in ("numpy", "loop"):  # exact: the same bits whatever the batch size
            if same_backend is None:
                same_backend = fitnesses, stats
            assert np.array_equal(fitnesses, same_backend[0])
            assert stats is None or np.array_equal(stats, same_backend[1])
        if backend == choose_policy_backend(GymNE(**config, num_actors=None).network):  # auto's own choice
            assert np.array_equal(fitnesses, reference)
            assert stats is None or np.array_equal(stats, reference_stats)
        np.testing.assert_allclose(fitnesses, reference, rtol=1e-5, atol=1e-6)
        if stats is not None:
            np.testing.assert_allclose(stats, reference_stats, rtol=1e-6)


def test_gymne_refuses_a_bad_policy_backend() -> None:
    with pytest.raises(ValueError, match="policy_backend must be one of 'auto', 'numpy', 'torch', 'vmap', 'loop'"):
        GymNE("CartPole-v1", CARTPOLE_NET, num_actors=None, policy_backend="gpu")
    with pytest.raises(ValueError, match=r"policy_backend='vmap': .*data-dependent"):
        GymNE("CartPole-v1", Branchy, num_actors=None, policy_backend="vmap")
    problem = GymNE("CartPole-v1", TwoHeads, num_actors=None, policy_backend="vmap", rollout_batch_size=3)
    batch = problem.generate_batch(4)
    problem.evaluate(batch)
    assert isinstance(problem._policy_cache[3], VmapPolicy)


# ------------------------------------------------------------------ CUDA (skipped without a GPU)
@needs_cuda
@pytest.mark.parametrize("name", ["mlp-64", "activations", "custom-module", "hpcne-layers", "rnn", "lstm"])
def test_cuda_auto_backend_matches_the_per_solution_gpu_forward(name: str) -> None:
    factory, obs_length, mlp = NET_CASES[name]
    net = factory().requires_grad_(False).to("cuda")
    policy = make_batched_policy(net, 6, obs_length=obs_length)
    assert isinstance(policy, TorchMLP if mlp else VmapPolicy)
    stacked = [step[0] for step in policy._steps if isinstance(step, tuple)] if mlp else list(policy._params.values())
    assert all(t.device.type == "cuda" for t in stacked)  # the stacked parameters live on the GPU
    for got, expected in drive(policy, net, obs_length):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("name", ["cartpole-obsnorm-2-episodes", "pendulum-noise-obsnorm", "cartpole-recurrent"])
def test_cuda_gymne_matches_the_per_solution_gpu_path(name: str) -> None:
    config = {**GYM_CONFIGS[name], "episode_length": 30}
    values = 0.5 * torch.randn(
        (7, GymNE(**config, num_actors=None).solution_length), generator=torch.Generator().manual_seed(0)
    )
    reference, counts, reference_stats = evaluate(
        config, values, device="cuda", rollout_batch_size=1, policy_backend="loop"
    )
    for backend in ("auto", "vmap"):
        fitnesses, its_counts, stats = evaluate(config, values, device="cuda", policy_backend=backend)
        assert its_counts == counts
        np.testing.assert_allclose(fitnesses, reference, rtol=1e-4, atol=1e-4)
        if stats is not None:
            np.testing.assert_allclose(stats, reference_stats, rtol=1e-4)


@needs_cuda
def test_cuda_device_mapped_by_the_runtime_moves_the_batched_policy() -> None:
    config = GYM_CONFIGS["pendulum-noise-obsnorm"]
    cpu, moved = (GymNE(**config, num_actors=None, seed=5, rollout_batch_size=4) for _ in range(2))
    moved._use_device(torch.device("cuda", 0))  # what hpcne.parallel.runtime.place_problem does on a GPU rank
    values = 0.5 * torch.randn((6, cpu.solution_length), generator=torch.Generator().manual_seed(0))
    results = []
    for problem in (cpu, moved):
        batch = problem.generate_batch(6)
        batch.set_values(values)
        problem.evaluate(batch)
        results.append(batch.evals[:, 0].cpu().numpy())
    assert isinstance(cpu._policy_cache[4], NumpyMLP)
    policy = moved._policy_cache[4]
    assert isinstance(policy, TorchMLP) and policy.device.type == "cuda"
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-4)
