"""The distributed mode's two operations for runtimes whose workers share the coordinator's memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hpcne.sampling import GaussianSample, NoiseStream, Replica, generation_sums

if TYPE_CHECKING:
    from hpcne.core import EvalResult

__all__ = ["LocalSampling"]


class LocalSampling:
    """Serial and pool runtimes: rows and noise sums are computed by the coordinator.

    A pool's workers sit on the coordinator's node, so generating rows there and shipping them
    through pipes costs what the centralized mode costs; the results are the same bits as the MPI
    runtime's, which generates rows and sums noise where the solutions are evaluated.
    """

    def evaluate_sampled(self, sample: GaussianSample, popsize: int, replica: Replica | None = None) -> EvalResult:
        """Evaluate the first ``popsize`` rows of ``sample`` as its evaluation round."""
        return self.evaluate(sample.rows(0, popsize), sample.stream.eval_round)  # type: ignore[attr-defined]

    def update_distribution(
        self, replica: Replica, streams: Sequence[NoiseStream], weights: np.ndarray, exponents: tuple[int, int]
    ) -> None:
        """Sum the whole generation's noise here and update the one copy of the distribution."""
        replica.apply_noise_sums(generation_sums(streams, weights, exponents), exponents, float(weights.sum()))
