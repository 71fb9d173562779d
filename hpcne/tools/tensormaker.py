"""TensorMakerMixin: a problem's random and constant tensors, in its dtype, on its device (EvoTorch's)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["TensorMakerMixin"]


class TensorMakerMixin:
    """``make_gaussian``, ``make_uniform``, ``make_randint``, ``make_zeros``, ``make_ones``, ``make_tensor``.

    The class using it provides ``dtype``, ``device``, ``solution_length`` and ``generator`` (the
    generator to draw from: a problem's is per solution during an evaluation).
    """

    dtype: torch.dtype
    device: torch.device
    solution_length: int
    generator: torch.Generator

    def _sample_size(
        self, size: tuple[Any, ...], num_solutions: int | None, out: torch.Tensor | None
    ) -> tuple[int, ...]:
        """The shape to sample: ``size``, ``(num_solutions, solution_length)`` or the shape of ``out``."""
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        if num_solutions is not None:
            if size:
                raise ValueError("Give either a size or num_solutions, not both.")
            return (int(num_solutions), self.solution_length)
        if not size:
            if out is None:
                raise ValueError("Say what to sample: a size, num_solutions=n, or out=tensor.")
            return tuple(out.shape)
        return tuple(int(n) for n in size)

    def make_gaussian(
        self,
        *size: int,
        num_solutions: int | None = None,
        out: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        center: float | torch.Tensor | None = None,
        stdev: float | torch.Tensor | None = None,
        symmetric: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a Gaussian tensor (optionally ``center + stdev * z``; ``symmetric`` pairs ±z rows).

        The shape is ``size``, or ``(num_solutions, solution_length)``, or that of ``out`` (which
        is then filled). Inside an evaluation the numbers come from the solution's own generator.
        """
        size = self._sample_size(size, num_solutions, out)
        gen = generator or self.generator
        dtype = dtype or (out.dtype if out is not None else self.dtype)
        if symmetric:
            if size[0] % 2:
                raise ValueError(f"A symmetric sample needs an even number of rows; got {size[0]}.")
            half = torch.randn((size[0] // 2, *size[1:]), generator=gen, dtype=dtype)
            z = torch.stack([half, -half], dim=1).reshape(size)
        else:
            z = torch.randn(size, generator=gen, dtype=dtype)
        if stdev is not None:
            z = z * torch.as_tensor(stdev, dtype=dtype)
        if center is not None:
            z = z + torch.as_tensor(center, dtype=dtype)
        if out is not None:
            return out.copy_(z)
        return z.to(device or self.device)

    def make_uniform(
        self,
        *size: int,
        num_solutions: int | None = None,
        out: torch.Tensor | None = None,
        lb: float | torch.Tensor | None = None,
        ub: float | torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a uniform tensor in ``[lb, ub)`` (default ``[0, 1)``); shapes as in :meth:`make_gaussian`."""
        size = self._sample_size(size, num_solutions, out)
        dtype = dtype or (out.dtype if out is not None else self.dtype)
        u = torch.rand(size, generator=generator or self.generator, dtype=dtype)
        lb_t = torch.as_tensor(0.0 if lb is None else lb, dtype=dtype)
        ub_t = torch.as_tensor(1.0 if ub is None else ub, dtype=dtype)
        u = lb_t + u * (ub_t - lb_t)
        if out is not None:
            return out.copy_(u)
        return u.to(device or self.device)

    def make_zeros(
        self, *size: int, num_solutions: int | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """A tensor of zeros on the problem's device (shape as in :meth:`make_gaussian`)."""
        return torch.zeros(self._sample_size(size, num_solutions, None), dtype=dtype or self.dtype, device=self.device)

    def make_ones(self, *size: int, num_solutions: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor of ones on the problem's device (shape as in :meth:`make_gaussian`)."""
        return torch.ones(self._sample_size(size, num_solutions, None), dtype=dtype or self.dtype, device=self.device)

    def make_tensor(self, data: Any, *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``data`` as a tensor of the problem's dtype on its device."""
        return torch.as_tensor(data, dtype=dtype or self.dtype, device=self.device)

    def make_randint(
        self,
        *size: int,
        n: int,
        num_solutions: int | None = None,
        out: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample integers from ``0..n-1`` (int64 unless ``dtype``); shapes as in :meth:`make_gaussian`."""
        size = self._sample_size(size, num_solutions, out)
        dtype = dtype or (out.dtype if out is not None else torch.int64)
        values = torch.randint(int(n), size, generator=generator or self.generator).to(dtype)
        if out is not None:
            return out.copy_(values)
        return values.to(device or self.device)
