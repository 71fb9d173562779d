"""Neuroevolution: NEProblem, GymNE, VecGymNE and the networks they evolve."""

from __future__ import annotations

from hpcne.neuroevolution import net
from hpcne.neuroevolution.gymne import GymNE
from hpcne.neuroevolution.neproblem import NEProblem
from hpcne.neuroevolution.supervisedne import SupervisedNE
from hpcne.neuroevolution.vecgymne import VecGymNE

__all__ = ["GymNE", "NEProblem", "SupervisedNE", "VecGymNE", "net"]
