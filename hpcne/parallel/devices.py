"""Which device each worker uses: node-local rank → CUDA device, or the CPU."""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["choose_device", "env_local_rank", "wants_gpu"]

_LOCAL_RANK_VARS = ("SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK")


def env_local_rank() -> int | None:
    """The node-local rank from the launcher's environment variables, if any is set."""
    for var in _LOCAL_RANK_VARS:
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


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
