"""Which device each worker uses: node-local rank → CUDA device, or the CPU."""

from __future__ import annotations

import os
import socket
from typing import Any

import torch

__all__ = ["choose_device", "env_local_rank", "node_placement", "wants_gpu"]

_LOCAL_RANK_VARS = ("SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK")


def env_local_rank() -> int | None:
    """The node-local rank from the launcher's environment variables, if any is set."""
    for var in _LOCAL_RANK_VARS:
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def node_placement(comm: Any) -> tuple[str, int]:
    """This MPI rank's node name and node-local rank (collective: every rank of ``comm`` calls it).

    Under ``srun`` with one task per rank (``SLURM_PROCID`` and the step's task count match the
    communicator), SLURM's own view: ``SLURMD_NODENAME`` and ``SLURM_LOCALID``; that also holds
    for emulated nodes that share one machine (``HPCNE_SLURM_NODES`` in scripts/local-slurm.sh).
    Otherwise (``mpiexec``, or a launcher that starts one SLURM task per node) the host name and
    the rank among the ranks that share memory with this one.
    """
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank = node.Get_rank()
    node.Free()
    env = os.environ
    try:
        task = int(env["SLURM_PROCID"]), int(env.get("SLURM_STEP_NUM_TASKS", env["SLURM_NTASKS"]))
        name, slurm_local = env["SLURMD_NODENAME"], int(env["SLURM_LOCALID"])
    except (KeyError, ValueError):
        return socket.gethostname(), local_rank
    if task != (comm.Get_rank(), comm.Get_size()):
        return socket.gethostname(), local_rank
    return name, slurm_local


def wants_gpu(actor_config: dict[str, Any], num_gpus_per_actor: Any, device: torch.device) -> bool:
    """Whether the problem's options ask workers to use a GPU."""
    requested = str(actor_config.get("device", device))
    return (
        requested.startswith("cuda")
        or float(actor_config.get("num_gpus", 0) or 0) > 0
        or num_gpus_per_actor in ("all", "max")
        or (isinstance(num_gpus_per_actor, (int, float)) and num_gpus_per_actor > 0)
    )


def choose_device(
    local_rank: int, actor_config: dict[str, Any], num_gpus_per_actor: Any, device: torch.device
) -> torch.device:
    """Map a worker to a device.

    A worker uses a GPU only when asked (``device="cuda"``, ``actor_config={"num_gpus": ...}``
    or ``num_gpus_per_actor``) and one is visible. Workers of a node share its visible GPUs
    round-robin by node-local rank; with one visible device per task (SLURM
    ``--gpus-per-task=1`` sets ``CUDA_VISIBLE_DEVICES``) every rank gets ``cuda:0``.
    """
    if not wants_gpu(actor_config, num_gpus_per_actor, device) or not torch.cuda.is_available():
        return torch.device("cpu")
    if device.type == "cuda" and device.index is not None:
        return device
    return torch.device("cuda", local_rank % torch.cuda.device_count())
