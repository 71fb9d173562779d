"""Seed derivation: every random stream comes from the run seed and a position, never a process."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["derive_seed", "fresh_seed", "generator_for", "torch_generator_for"]


def fresh_seed() -> int:
    """Return a new random 63-bit seed (used when the user gives none, and then recorded)."""
    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))


def derive_seed(seed: int, *keys: int) -> int:
    """Return a 63-bit seed that depends only on ``seed`` and the integer ``keys``.

    The keys name a position in the run, e.g. ``(evaluation round, solution index, episode)``,
    so that a rollout draws the same numbers whichever rank or process performs it. The seed
    is a BLAKE2b hash of the numbers: well mixed (neighbouring positions give unrelated seeds)
    and cheap enough to compute once per episode.

    Args:
        seed: The run's seed (a non-negative int).
        keys: Non-negative ints.

    Returns:
        An int in ``[0, 2**63)``.

    Raises:
        ValueError: If the seed or a key is negative or not an int.
    """
    numbers = (seed, *keys)
    for n in numbers:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"derive_seed takes non-negative ints; got {n!r} in {numbers!r}.")
    data = ",".join(map(str, map(int, numbers))).encode()
    digest = hashlib.blake2b(data, digest_size=8, person=b"hpcne.seed").digest()
    return int.from_bytes(digest, "little") >> 1


def generator_for(seed: int, *keys: int) -> np.random.Generator:
    """Return a numpy generator seeded from ``seed`` and ``keys`` (see :func:`derive_seed`)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *keys])))


def torch_generator_for(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a torch generator seeded from ``seed`` and ``keys`` (see :func:`derive_seed`)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))
