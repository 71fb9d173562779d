"""MPI-level checks of what the runtime relies on: packed statistics and rank-independent rollouts."""

from __future__ import annotations

import numpy as np
import pytest

from hpcne.neuroevolution import GymNE
from hpcne.neuroevolution.net import RunningStat

pytestmark = pytest.mark.mpi(min_size=2)

NETWORK = "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)"


@pytest.mark.timeout(60)
def test_allreduce_of_packed_stats_equals_merge() -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(comm.rank)
    mine = RunningStat(shape=3)
    mine.update(rng.normal(size=(10 + comm.rank, 3)))
    total = mine.pack()
    comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
    merged = RunningStat(shape=3)
    for part in comm.allgather(mine.pack()):
        merged.update(RunningStat.unpack(part, 3))
    reduced = RunningStat.unpack(total, 3)
    assert reduced.count == merged.count == sum(10 + r for r in range(comm.size))
    np.testing.assert_allclose(reduced.mean, merged.mean, rtol=1e-12)
    np.testing.assert_allclose(reduced.stdev, merged.stdev, rtol=1e-12)


@pytest.mark.timeout(120)
def test_a_solution_scores_the_same_on_every_rank() -> None:
    """Rank r evaluates the solutions in a rotated order; each solution must score the same everywhere."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    problem = GymNE("CartPole-v1", NETWORK, num_actors=None, seed=11, initial_bounds=(-1, 1))
    values = comm.bcast(problem.generate_values(6).numpy() if comm.rank == 0 else None, root=0)
    order = np.roll(np.arange(6), comm.rank)
    per_row = np.array([problem._evaluate_local(values[i : i + 1], int(i), 0).fitness[0] for i in order])
    everyone = comm.allgather(dict(zip(order.tolist(), per_row.tolist())))
    assert all(d == everyone[0] for d in everyone)
