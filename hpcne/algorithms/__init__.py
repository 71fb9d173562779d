"""Search algorithms (EvoTorch's ``evotorch.algorithms``): PGPE, SNES, XNES, CEM, CMA-ES, GAs and CoSyNE."""

from __future__ import annotations

from hpcne.algorithms.base import Hook, SearchAlgorithm
from hpcne.algorithms.cem import CEM
from hpcne.algorithms.cmaes import CMAES
from hpcne.algorithms.cosyne import Cosyne
from hpcne.algorithms.ga import GeneticAlgorithm, SteadyStateGA
from hpcne.algorithms.gaussian import GaussianSearchAlgorithm
from hpcne.algorithms.mapelites import MAPElites
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
    "Cosyne",
    "GaussianSearchAlgorithm",
    "GeneticAlgorithm",
    "Hook",
    "MAPElites",
    "SearchAlgorithm",
    "SteadyStateGA",
]

ALGORITHMS: dict[str, type[SearchAlgorithm]] = {
    cls.name: cls for cls in (PGPE, SNES, XNES, CEM, CMAES, GeneticAlgorithm)
}
