"""Running observation statistics for online observation normalization, mergeable across processes."""

from __future__ import annotations

import copy

import numpy as np
import torch
from numpy.typing import ArrayLike

from hpcne.neuroevolution.net.layers import ObsNormLayer

__all__ = ["RunningStat"]

_MAX_EXACT_COUNT = 2**53
_MIN_VARIANCE = 1e-2


def _as_float64(x: ArrayLike | torch.Tensor) -> np.ndarray:
    """Converts array-likes and tensors to a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _to_shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    """Normalizes an int or a tuple of ints to a shape tuple."""
    return (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(n) for n in shape)


class RunningStat:
    """Count, sum and sum of squares of observations, giving their mean and stdev (EvoTorch-compatible).

    All numbers are float64 numpy arrays. Two RunningStats merge exactly with `update`, and `pack` /
    `unpack` turn one into a flat float64 buffer that MPI can sum with Allreduce.
    """

    def __init__(self, shape: int | tuple[int, ...] | None = None) -> None:
        """Initializes empty statistics.

        Args:
            shape: Shape of one observation. If None, it is taken from the first update.
        """
        self._shape = None if shape is None else _to_shape(shape)
        self.reset()

    def reset(self) -> None:
        """Forgets all observations; a known shape is kept, with sums set to zeros."""
        self._count = 0
        self._sum = None if self._shape is None else np.zeros(self._shape)
        self._sum_of_squares = None if self._shape is None else np.zeros(self._shape)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape of one observation, or None while unknown."""
        return self._shape

    @property
    def count(self) -> int:
        """Number of observations accumulated."""
        return self._count

    @property
    def sum(self) -> np.ndarray | None:
        """Sum of the observations, or None while the shape is unknown."""
        return self._sum

    @property
    def sum_of_squares(self) -> np.ndarray | None:
        """Sum of the squared observations, or None while the shape is unknown."""
        return self._sum_of_squares

    @property
    def mean(self) -> np.ndarray:
        """Mean of the observations (zeros while there are none)."""
        self._require_shape("mean")
        if self._count == 0:
            return np.zeros(self._shape)
        return self._sum / self._count

    @property
    def stdev(self) -> np.ndarray:
        """Standard deviation, with the variance floored at 1e-2 as in EvoTorch (ones while empty)."""
        self._require_shape("stdev")
        if self._count == 0:
            return np.ones(self._shape)
        variance = self._sum_of_squares / self._count - np.square(self.mean)
        return np.sqrt(np.maximum(variance, _MIN_VARIANCE))

    def _require_shape(self, what: str) -> None:
        """Raises if the observation shape is still unknown."""
        if self._shape is None:
            raise ValueError(
                f"RunningStat.{what} needs the observation shape, but this RunningStat has no shape and "
                "no observations yet; call update() first or create it with RunningStat(shape)."
            )

    def update(self, x: ArrayLike | torch.Tensor | RunningStat) -> None:
        """Accumulates one observation, a batch of observations (rows), or another RunningStat.

        Args:
            x: An observation of the known shape (or 1-D while the shape is unknown), a batch whose
                rows are observations, or a RunningStat to merge exactly (a no-op if it is empty).

        Raises:
            ValueError: If the shape of `x` does not match the observation shape.
        """
        if isinstance(x, RunningStat):
            if x.count > 0:
                self._add(x.shape, x.count, x.sum, x.sum_of_squares)
            return
        data = _as_float64(x)
        if data.shape == self._shape or (self._shape is None and data.ndim == 1):
            self._add(data.shape, 1, data, np.square(data))
        elif data.shape[1:] == self._shape or (self._shape is None and data.ndim == 2):
            self._add(data.shape[1:], data.shape[0], data.sum(axis=0), np.square(data).sum(axis=0))
        else:
            expected = "a 1-D observation" if self._shape is None else f"an observation of shape {self._shape}"
            raise ValueError(
                f"RunningStat expected {expected} or a batch of them, but found shape {data.shape}; "
                "pass observations of one space, or create RunningStat(shape) for other shapes."
            )

    def _add(self, shape: tuple[int, ...], count: int, total: np.ndarray, total_sq: np.ndarray) -> None:
        """Adds counts and sums, after checking the observation shape."""
        if self._shape is None:
            self._shape = shape
            self.reset()
        elif shape != self._shape:
            raise ValueError(
                f"RunningStat expected statistics of observations of shape {self._shape}, but found shape "
                f"{shape}; only merge statistics of the same observation space."
            )
        self._count += int(count)
        self._sum = self._sum + total
        self._sum_of_squares = self._sum_of_squares + total_sq

    def normalize(self, x: ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Returns `(x - mean) / stdev`; `x` itself (as float32 for arrays) while there are no observations.

        Args:
            x: Observations: a float32 numpy array is returned for array-likes, a tensor for tensors.
        """
        if isinstance(x, torch.Tensor):
            if self._count == 0:
                return x
            dtype = x.dtype if x.is_floating_point() else torch.float32
            mean = torch.as_tensor(self.mean, dtype=dtype, device=x.device)
            stdev = torch.as_tensor(self.stdev, dtype=dtype, device=x.device)
            return (x - mean) / stdev
        data = np.asarray(x, dtype=np.float32)
        if self._count == 0:
            return data
        return ((data - self.mean) / self.stdev).astype(np.float32)

    def copy(self) -> RunningStat:
        """Returns an independent copy."""
        return copy.deepcopy(self)

    def to_layer(self, trainable_stats: bool = False) -> ObsNormLayer:
        """Returns an `ObsNormLayer` normalizing with the current mean and stdev.

        Args:
            trainable_stats: Store mean and stdev as parameters instead of buffers.
        """
        return ObsNormLayer(self, trainable_stats=trainable_stats)

    @staticmethod
    def packed_size(n: int) -> int:
        """Returns the length of the packed buffer for observations of `n` numbers."""
        return 1 + 2 * n

    def pack(self) -> np.ndarray:
        """Returns `[count, sum..., sum_of_squares...]` as one float64 array, e.g. for MPI Allreduce."""
        self._require_shape("pack")
        return np.concatenate([[float(self._count)], self._sum.ravel(), self._sum_of_squares.ravel()])

    @classmethod
    def unpack(cls, buffer: ArrayLike, shape: int | tuple[int, ...]) -> RunningStat:
        """Builds a RunningStat from a buffer made by `pack` (or a sum of such buffers).

        Args:
            buffer: The packed float64 buffer.
            shape: Shape of one observation.

        Raises:
            ValueError: If the buffer length does not fit the shape or the count is not an exact integer.
        """
        stat = cls(shape)
        n = int(np.prod(stat.shape))
        data = np.array(buffer, dtype=np.float64)
        if data.shape != (cls.packed_size(n),):
            raise ValueError(
                f"RunningStat.unpack expected a flat buffer of length {cls.packed_size(n)} for shape "
                f"{stat.shape}, but found shape {data.shape}; pass the shape used with pack()."
            )
        count = data[0]
        if not (0 <= count < _MAX_EXACT_COUNT and count == int(count)):
            raise ValueError(
                f"RunningStat.unpack expected an exact integer count in [0, 2**53), but found {count!r}; "
                "the buffer is corrupt or too many observations were merged to count exactly."
            )
        stat._count = int(count)
        stat._sum = data[1 : 1 + n].reshape(stat.shape)
        stat._sum_of_squares = data[1 + n :].reshape(stat.shape)
        return stat

    def __repr__(self) -> str:
        """Shows the shape and the count."""
        return f"RunningStat(shape={self._shape}, count={self._count})"
