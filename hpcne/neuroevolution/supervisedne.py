"""SupervisedNE: evolve a network to minimise a loss on a dataset (EvoTorch's ``SupervisedNE``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from hpcne.neuroevolution.neproblem import NEProblem, NetworkSpec
from hpcne.seeding import torch_generator_for

__all__ = ["SupervisedNE"]

# The seeding stream of the minibatches shared by a round's solutions (hpcne.problem uses 0-2).
_STREAM_MINIBATCHES = 3


class SupervisedNE(NEProblem):
    """Minimise ``loss_func(network(x), y)`` averaged over ``num_minibatches`` minibatches of ``dataset``.

    Minibatches are drawn without replacement from a seeded generator: with
    ``common_minibatch`` (the default) every solution of an evaluation round sees the same ones,
    drawn from ``(seed, round)``; otherwise each solution draws its own from its evaluation
    generator. Either way a fitness does not depend on which worker computed it.
    ``minibatch_size=None`` uses the whole dataset. Subclasses may override :meth:`_loss`
    instead of passing ``loss_func``.
    """

    def __init__(
        self,
        dataset: Dataset,
        network: NetworkSpec,
        loss_func: Callable[[Any, Any], Any] | None = None,
        *,
        network_args: Mapping[str, Any] | None = None,
        initial_bounds: tuple[Any, Any] | None = (-1e-5, 1e-5),
        minibatch_size: int | None = None,
        num_minibatches: int | None = None,
        num_actors: int | str | None = None,
        common_minibatch: bool = True,
        num_gpus_per_actor: float | str | None = None,
        actor_config: dict | None = None,
        num_subbatches: int | None = None,
        subbatch_size: int | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
    ) -> None:
        """Create the problem (objective sense ``"min"``).

        Args:
            dataset: A map-style dataset of ``(x, y)`` pairs (e.g. a ``TensorDataset``).
            network: The network, in any form :class:`NEProblem` accepts.
            loss_func: ``loss(y_hat, y)``, e.g. ``nn.MSELoss()``; or override :meth:`_loss`.
            network_args: Extra arguments for the network.
            initial_bounds: Interval of the initial parameters.
            minibatch_size: Samples per minibatch; None for the whole dataset.
            num_minibatches: Minibatches per evaluation (default 1).
            num_actors: Parallel workers (see :class:`hpcne.core.Problem`).
            common_minibatch: The same minibatches for all solutions of a round.
            num_gpus_per_actor: GPU share per worker.
            actor_config: Per-worker options.
            num_subbatches: Dynamic split into this many pieces.
            subbatch_size: Dynamic split into pieces of this size.
            device: Device of the problem's tensors and networks.
            seed: Run seed.
        """
        if loss_func is not None and not callable(loss_func):
            raise TypeError(f"loss_func must be callable, e.g. torch.nn.MSELoss(); got {type(loss_func).__name__}.")
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("SupervisedNE needs a non-empty dataset.")
        super().__init__(
            "min",
            network,
            network_args=network_args,
            initial_bounds=initial_bounds,
            num_actors=num_actors,
            num_gpus_per_actor=num_gpus_per_actor,
            actor_config=actor_config,
            num_subbatches=num_subbatches,
            subbatch_size=subbatch_size,
            device=device,
            seed=seed,
        )
        self.dataset = dataset
        self._loss_func = loss_func
        size = len(dataset)  # type: ignore[arg-type]
        self.minibatch_size = size if minibatch_size is None else min(int(minibatch_size), size)
        self.num_minibatches = 1 if num_minibatches is None else int(num_minibatches)
        if self.minibatch_size < 1 or self.num_minibatches < 1:
            raise ValueError(
                f"minibatch_size and num_minibatches must be positive; got {minibatch_size!r}, {num_minibatches!r}."
            )
        self.common_minibatch = bool(common_minibatch)
        self._shared: tuple[int, list[Any]] | None = None  # (round, its common minibatches)

    def loss(self, y_hat: Any, y: Any) -> Any:
        """The loss of predictions ``y_hat`` against targets ``y``."""
        return self._loss(y_hat, y) if self._loss_func is None else self._loss_func(y_hat, y)

    def _loss(self, y_hat: Any, y: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} needs loss_func, or an override of _loss(y_hat, y).")

    def _draw_minibatches(self, generator: torch.Generator) -> list[Any]:
        """``num_minibatches`` minibatches of distinct samples, on the network's device."""
        order = torch.randperm(len(self.dataset), generator=generator)  # type: ignore[arg-type]
        batches = []
        for i in range(self.num_minibatches):
            start = (i * self.minibatch_size) % len(order)
            picks = order.roll(-start)[: self.minibatch_size].tolist()
            batch = default_collate([self.dataset[j] for j in picks])
            batches.append([part.to(self.network_device) for part in batch])
        return batches

    def _minibatches(self) -> list[Any]:
        """The minibatches of the solution being evaluated (shared by its round when common)."""
        if not self.common_minibatch or self._eval_position is None:
            return self._draw_minibatches(self.generator)
        eval_round = self._eval_position[0]
        if self._shared is None or self._shared[0] != eval_round:
            generator = torch_generator_for(self.seed, _STREAM_MINIBATCHES, eval_round)
            self._shared = (eval_round, self._draw_minibatches(generator))
        return self._shared[1]

    def _evaluate_network(self, network: nn.Module) -> float:
        """The mean loss of ``network`` over its minibatches."""
        with torch.no_grad():
            losses = [float(self.loss(network(x), y)) for x, y in self._minibatches()]
        return sum(losses) / len(losses)
