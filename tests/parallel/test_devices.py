"""Which device a worker uses (torch.cuda is monkeypatched: this machine has no GPU)."""

from __future__ import annotations

import pytest
import torch
from parallel_helpers import sum_problem

from hpcne.parallel import SerialRuntime
from hpcne.parallel.devices import choose_device, env_local_rank

CPU = torch.device("cpu")


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Pretend torch sees two GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    return monkeypatch


@pytest.mark.parametrize(
    ("actor_config", "per_actor", "device"),
    [
        ({"num_gpus": 1}, None, CPU),
        ({}, 0.5, CPU),
        ({}, "all", CPU),
        ({"device": "cuda"}, None, CPU),
        ({}, None, torch.device("cuda")),
    ],
)
def test_a_gpu_request_maps_ranks_round_robin(
    gpus: pytest.MonkeyPatch, actor_config: dict, per_actor: object, device: torch.device
) -> None:
    chosen = [choose_device(rank, actor_config, per_actor, device) for rank in range(4)]
    assert chosen == [torch.device("cuda", r % 2) for r in range(4)]


def test_without_a_request_workers_stay_on_the_cpu(gpus: pytest.MonkeyPatch) -> None:
    assert choose_device(1, {}, None, CPU) == CPU
    assert choose_device(1, {"num_gpus": 0}, 0, CPU) == CPU


def test_without_a_visible_gpu_a_request_falls_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device(1, {"num_gpus": 1}, None, CPU) == CPU


def test_one_visible_gpu_per_task_gives_every_rank_cuda_0(gpus: pytest.MonkeyPatch) -> None:
    gpus.setattr(torch.cuda, "device_count", lambda: 1)  # e.g. CUDA_VISIBLE_DEVICES=3 from srun --gpus-per-task=1
    assert {choose_device(rank, {"num_gpus": 1}, None, CPU) for rank in range(3)} == {torch.device("cuda", 0)}


def test_an_explicit_device_index_is_kept(gpus: pytest.MonkeyPatch) -> None:
    assert choose_device(0, {}, None, torch.device("cuda", 1)) == torch.device("cuda", 1)


@pytest.mark.parametrize("variable", ["SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK"])
def test_the_local_rank_comes_from_the_launchers_variables(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    for name in ("SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert env_local_rank() is None
    monkeypatch.setenv(variable, "junk")
    assert env_local_rank() is None
    monkeypatch.setenv(variable, "3")
    assert env_local_rank() == 3


def test_the_serial_runtime_places_the_problem_by_local_rank(gpus: pytest.MonkeyPatch) -> None:
    gpus.setenv("SLURM_LOCALID", "3")
    problem = sum_problem(actor_config={"num_gpus": 1})
    placed: list[torch.device] = []
    gpus.setattr(problem, "_use_device", placed.append)
    runtime = problem.runtime
    assert isinstance(runtime, SerialRuntime)
    assert placed == [torch.device("cuda", 1)]
    assert runtime.devices[0][1] == "cuda:1"
