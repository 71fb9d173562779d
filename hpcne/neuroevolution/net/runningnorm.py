"""RunningNorm: observation statistics kept as torch tensors, for batches of environments with masks."""

from __future__ import annotations

import torch

__all__ = ["RunningNorm"]


class RunningNorm:
    """Running mean and standard deviation of observations of ``shape``, updated from masked batches.

    The torch counterpart of :class:`~hpcne.neuroevolution.net.runningstat.RunningStat` (which
    GymNE uses, on numpy arrays): sums are kept in float64 on ``device``; ``mean``, ``stdev`` and
    :meth:`normalize` answer in ``dtype``. As in EvoTorch, the variance is floored at
    ``min_variance`` and normalized values may be clipped.
    """

    def __init__(
        self,
        *,
        shape: int | tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        min_variance: float = 1e-2,
        clip: tuple[float, float] | None = None,
    ) -> None:
        """Create empty statistics.

        Args:
            shape: The shape of one observation.
            dtype: The dtype of the reported statistics and normalized observations.
            device: Where the statistics live.
            min_variance: The smallest variance used to normalize (guards constant dimensions).
            clip: ``(low, high)`` for the normalized observations, or None.
        """
        self.shape = (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)
        self.dtype = dtype
        self.device = torch.device(device)
        self.min_variance = float(min_variance)
        if clip is not None and not float(clip[0]) < float(clip[1]):
            raise ValueError(f"clip must be (low, high) with low < high; got {clip!r}.")
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.reset()

    def reset(self) -> None:
        """Forget every observation."""
        self._sum = torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        self._sum_of_squares = torch.zeros_like(self._sum)
        self.count = 0

    def update(self, x: torch.Tensor | RunningNorm, mask: torch.Tensor | None = None) -> None:
        """Add observations: one of ``shape``, a batch ``(..., *shape)``, or another RunningNorm's.

        Args:
            x: The observations, or a RunningNorm whose statistics are merged in.
            mask: For a batch, a boolean tensor of its leading shape: only True rows count.
        """
        if isinstance(x, RunningNorm):
            self._add(x.count, x._sum, x._sum_of_squares)
            return
        x = torch.as_tensor(x, device=self.device).to(torch.float64)
        if tuple(x.shape[x.ndim - len(self.shape) :]) != self.shape:
            raise ValueError(f"RunningNorm expected observations of shape (..., {self.shape}); got {tuple(x.shape)}.")
        rows = x.reshape(-1, *self.shape)
        if mask is not None:
            rows = rows[torch.as_tensor(mask, device=self.device).reshape(-1).to(torch.bool)]
        self._add(rows.shape[0], rows.sum(dim=0), (rows**2).sum(dim=0))

    def _add(self, count: int, total: torch.Tensor, total_sq: torch.Tensor) -> None:
        self._sum += total.to(self._sum)
        self._sum_of_squares += total_sq.to(self._sum)
        self.count += int(count)

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the observations (zeros while there are none)."""
        return (self._sum / max(self.count, 1)).to(self.dtype)

    @property
    def stdev(self) -> torch.Tensor:
        """Standard deviation, the variance floored at ``min_variance`` (ones while empty)."""
        if self.count == 0:
            return torch.ones(self.shape, dtype=self.dtype, device=self.device)
        mean = self._sum / self.count
        variance = (self._sum_of_squares / self.count - mean**2).clamp(min=self.min_variance)
        return variance.sqrt().to(self.dtype)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / stdev``, clipped if ``clip`` was given."""
        y = (torch.as_tensor(x, dtype=self.dtype, device=self.device) - self.mean) / self.stdev
        return y if self.clip is None else y.clamp(*self.clip)
