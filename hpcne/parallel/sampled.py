"""The distributed mode's two operations for runtimes whose workers share the coordinator's memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpcne.sampling import GaussianSample, NoiseStream, noise_sums

if TYPE_CHECKING:
    from hpcne.core import EvalResult

__all__ = ["LocalSampling"]


class LocalSampling:
    """Serial and pool runtimes: rows and noise sums are computed by the coordinator.

    A pool's workers sit on the coordinator's node, so generating rows there and shipping them
    through pipes costs what the centralized mode costs; the results are the same bits as the MPI
    runtime's, which generates rows and sums noise where the solutions are evaluated.
    """

    def evaluate_sampled(self, sample: GaussianSample, popsize: int) -> EvalResult:
        """Evaluate the first ``popsize`` rows of ``sample`` as its evaluation round."""
        return self.evaluate(sample.rows(0, popsize), sample.stream.eval_round)  # type: ignore[attr-defined]

    def noise_sums(
        self, stream: NoiseStream, weights: np.ndarray, exponents: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The fixed-point sums of :func:`hpcne.sampling.noise_sums` over the whole population."""
        return noise_sums(stream, weights, exponents, 0, stream.units(len(weights)))
