"""Seed derivation: every random stream comes from the run seed and a position, never a process."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "fresh_seed", "generator_for", "torch_generator_for"]


def fresh_seed() -> int:
    """Return a new random 63-bit seed (used when the user gives none, and then recorded)."""
    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))


def derive_seed(seed: int, *keys: int) -> int:
    """Return a 63-bit seed that depends only on ``seed`` and the integer ``keys``.

    The keys name a position in the run, e.g. ``(evaluation round, solution index, episode)``,
    so that a rollout draws the same numbers whichever rank or process performs it.

    Args:
        seed: The run's seed (a non-negative int).
        keys: Non-negative ints.

    Returns:
        An int in ``[0, 2**63)``.
    """
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def generator_for(seed: int, *keys: int) -> np.random.Generator:
    """Return a numpy generator seeded from ``seed`` and ``keys`` (see :func:`derive_seed`)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *keys])))


def torch_generator_for(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a torch generator seeded from ``seed`` and ``keys`` (see :func:`derive_seed`)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))
