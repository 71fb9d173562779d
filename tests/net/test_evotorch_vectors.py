"""Parameter vectors saved by EvoTorch 0.6.1 load into hpcne's networks and give the same outputs.

The data (tests/data/evotorch_policies.npz) was made by scripts/make_evotorch_vectors.py in a
separate EvoTorch venv: a feed-forward, an RNN and an LSTM policy for CartPole's sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hpcne.neuroevolution import GymNE
from hpcne.neuroevolution.net import ensure_stateful, fill_parameters, reset_module_state, str_to_net

DATA = np.load(Path(__file__).resolve().parent.parent / "data" / "evotorch_policies.npz", allow_pickle=False)
NAMES = ("feedforward", "rnn", "lstm")


def run(policy: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.stack([policy(torch.from_numpy(x)).numpy() for x in inputs])


def test_the_data_is_evotorch_0_6_1s() -> None:
    assert str(DATA["evotorch_version"]) == "0.6.1"


@pytest.mark.parametrize("name", NAMES)
def test_evotorch_vector_in_the_same_network_string(name: str) -> None:
    net = str_to_net(str(DATA[f"{name}/network"]))
    fill_parameters(net, torch.from_numpy(DATA[f"{name}/vector"]))
    outputs = run(ensure_stateful(net), DATA[f"{name}/inputs"])
    np.testing.assert_allclose(outputs, DATA[f"{name}/outputs"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_evotorch_vector_as_a_gymne_policy_gives_the_same_actions(name: str) -> None:
    problem = GymNE("CartPole-v1", str(DATA[f"{name}/network"]), num_actors=None, seed=0)  # 4 obs, 2 actions
    policy = problem.to_policy(DATA[f"{name}/vector"])
    reset_module_state(policy)
    outputs = run(policy, DATA[f"{name}/inputs"])
    np.testing.assert_allclose(outputs, DATA[f"{name}/outputs"], rtol=1e-5, atol=1e-6)
    assert (outputs.argmax(axis=1) == DATA[f"{name}/outputs"].argmax(axis=1)).all()  # CartPole's actions
