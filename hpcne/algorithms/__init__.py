"""Search algorithms (EvoTorch's ``evotorch.algorithms``): PGPE, SNES, XNES, CEM, CMA-ES and a GA."""

from __future__ import annotations

from hpcne.algorithms.base import Hook, SearchAlgorithm
from hpcne.algorithms.cem import CEM
from hpcne.algorithms.cmaes import CMAES
from hpcne.algorithms.ga import GeneticAlgorithm
from hpcne.algorithms.gaussian import GaussianSearchAlgorithm
from hpcne.algorithms.optimizers import SGD, Adam, ClipUp
from hpcne.algorithms.pgpe import PGPE
from hpcne.algorithms.snes import SNES
from hpcne.algorithms.xnes import XNES

__all__ = [
    "ALGORITHMS",
    "CEM",
    "CMAES",
    "PGPE",
    "SGD",
    "SNES",
    "XNES",
    "Adam",
    "ClipUp",
    "GaussianSearchAlgorithm",
    "GeneticAlgorithm",
    "Hook",
    "SearchAlgorithm",
]

ALGORITHMS: dict[str, type[SearchAlgorithm]] = {
    cls.name: cls for cls in (PGPE, SNES, XNES, CEM, CMAES, GeneticAlgorithm)
}
