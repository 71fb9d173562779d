"""Write tests/data/evotorch_policies.npz: policy parameter vectors, inputs and EvoTorch 0.6.1's outputs.

Run with the interpreter of a virtual environment holding EvoTorch (never hpcne's)::

    python -m venv /tmp/evt-venv
    /tmp/evt-venv/bin/pip install torch==2.13.0 evotorch==0.6.1
    /tmp/evt-venv/bin/python scripts/make_evotorch_vectors.py

For each network string (CartPole's sizes: 4 observations, 2 actions) the file holds a random
parameter vector, a sequence of observations, and the outputs of EvoTorch's network built from
the string, loaded with the vector and stepped through the sequence with its hidden state kept
(EvoTorch's ``StatefulModule``), as GymNE runs a policy. tests/net/test_evotorch_vectors.py
loads the same vectors into hpcne.
"""

from __future__ import annotations

from pathlib import Path

import evotorch
import numpy as np
import torch
from evotorch.neuroevolution.net import fill_parameters, parameter_vector, str_to_net
from evotorch.neuroevolution.net.statefulmodule import ensure_stateful

NETWORKS = {
    "feedforward": "Linear(4, 8) >> Tanh() >> Linear(8, 2)",
    "rnn": "RNN(4, 6) >> Linear(6, 2)",
    "lstm": "LSTM(4, 5) >> Tanh() >> Linear(5, 2)",
}
STEPS = 8
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "evotorch_policies.npz"


def main() -> None:
    """Build each network in EvoTorch, run it, and save vectors, inputs and outputs."""
    rng = np.random.default_rng(2026)
    arrays: dict[str, np.ndarray] = {
        "evotorch_version": np.array(evotorch.__version__),
        "torch_version": np.array(torch.__version__),
    }
    for name, text in NETWORKS.items():
        net = str_to_net(text)
        vector = rng.normal(scale=0.5, size=len(parameter_vector(net))).astype(np.float32)
        fill_parameters(net, torch.from_numpy(vector))
        policy = ensure_stateful(net)
        inputs = rng.normal(size=(STEPS, 4)).astype(np.float32)
        with torch.no_grad():
            outputs = np.stack([policy(torch.from_numpy(x)).numpy() for x in inputs])
        arrays.update({f"{name}/network": np.array(text), f"{name}/vector": vector})
        arrays.update({f"{name}/inputs": inputs, f"{name}/outputs": outputs})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with EvoTorch {evotorch.__version__}")


if __name__ == "__main__":
    main()
