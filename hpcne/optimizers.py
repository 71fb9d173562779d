"""Center optimizers, at EvoTorch's module path (``evotorch.optimizers`` → ``hpcne.optimizers``)."""

from hpcne.algorithms.optimizers import (
    SGD,
    Adam,
    CenterOptimizer,
    ClipUp,
    TorchOptimizer,
    get_optimizer_class,
    make_optimizer,
)

__all__ = ["SGD", "Adam", "CenterOptimizer", "ClipUp", "TorchOptimizer", "get_optimizer_class", "make_optimizer"]
