"""Fitness shaping: turn fitnesses into utilities where a higher utility is always better."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["RANKING_METHODS", "best_first", "check_ranking_method", "rank"]


def best_first(fitnesses: torch.Tensor, *, higher_is_better: bool = True) -> torch.Tensor:
    """Return the indices that sort ``fitnesses`` from best to worst, NaN always last (worst).

    The sort is stable: among equal fitnesses (and among NaNs) the earlier solution comes first.

    Args:
        fitnesses: A 1-D tensor of fitnesses.
        higher_is_better: Whether larger fitnesses are better (maximisation).

    Returns:
        A long tensor of indices, the best solution's first.
    """
    order = torch.argsort(fitnesses, descending=higher_is_better, stable=True)
    if not fitnesses.is_floating_point():
        return order
    nan = torch.isnan(fitnesses)[order]
    return torch.cat([order[~nan], order[nan]]) if bool(nan.any()) else order


def _positions(fitnesses: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    """Return each solution's position in the worst-to-best order: 0 for the worst, n-1 for the best.

    This is the argsort of :func:`best_first` (an argsort of an argsort); ties get distinct
    positions, the earlier solution counting as the better one.
    """
    order = best_first(fitnesses, higher_is_better=higher_is_better)
    positions = torch.empty_like(order)
    positions[order] = torch.arange(len(order) - 1, -1, -1, device=order.device)
    return positions.to(fitnesses.dtype)


def _centered(f: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    return _linear(f, higher_is_better) - 0.5


def _linear(f: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    return _positions(f, higher_is_better) / max(len(f) - 1, 1)


def _nes(f: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    n = len(f)
    rank_from_best = n - _positions(f, higher_is_better)  # 1 for the best solution
    weights = torch.clamp(math.log(n / 2 + 1) - torch.log(rank_from_best), min=0.0)
    return weights / weights.sum() - 1 / n


def _normalized(f: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    signed = _worst_for_nan(f if higher_is_better else -f)
    return (signed - signed.mean()) / signed.std()


def _raw(f: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    return _worst_for_nan(f.clone() if higher_is_better else -f)


def _worst_for_nan(signed: torch.Tensor) -> torch.Tensor:
    """Sign-adjusted fitnesses with each NaN replaced by the lowest finite one (0 when there is none)."""
    nan = torch.isnan(signed)
    if not bool(nan.any()):
        return signed
    finite = signed[~nan]
    worst = finite.min() if len(finite) else signed.new_zeros(())
    return torch.where(nan, worst, signed)


_RANKERS: dict[str, Callable[[torch.Tensor, bool], torch.Tensor]] = {
    "centered": _centered,
    "linear": _linear,
    "nes": _nes,
    "normalized": _normalized,
    "raw": _raw,
}

RANKING_METHODS: tuple[str, ...] = tuple(_RANKERS)


def check_ranking_method(ranking_method: str | None) -> str:
    """Return the ranking method's name (``"raw"`` for None) after checking that it is known.

    Raises:
        ValueError: If the method is unknown.
    """
    if ranking_method is None:
        return "raw"
    if ranking_method not in _RANKERS:
        raise ValueError(
            f"Unknown ranking method {ranking_method!r}; expected one of {', '.join(RANKING_METHODS)} or None."
        )
    return ranking_method


def rank(
    fitnesses: torch.Tensor | list[float], ranking_method: str | None, *, higher_is_better: bool = True
) -> torch.Tensor:
    """Return the utility of each solution; a better solution always gets a higher utility.

    Methods:
        ``"centered"``: ranks spaced linearly in ``[-0.5, 0.5]`` (Salimans et al. 2017).
        ``"linear"``: ranks spaced linearly in ``[0, 1]``.
        ``"nes"``: ``max(0, ln(n/2 + 1) - ln(k))`` for the solution ranked ``k`` (1 = best),
        normalised to sum 1, minus ``1/n`` (Wierstra et al. 2014).
        ``"normalized"``: z-scores of the (sign-adjusted) fitnesses.
        ``"raw"``: the fitnesses themselves, negated when lower is better. ``None`` means ``"raw"``.

    Ties are broken by position (stable sort): the earlier of two equal fitnesses ranks higher.
    A NaN fitness (a failed or diverged episode) is never ranked above a number: the rank-based
    methods put it last, and ``"raw"``/``"normalized"`` treat it as the lowest number present.

    Args:
        fitnesses: A 1-D sequence of fitnesses.
        ranking_method: One of :data:`RANKING_METHODS`, or None.
        higher_is_better: Whether larger fitnesses are better (maximisation).

    Returns:
        A floating-point tensor of utilities with the shape of ``fitnesses``.

    Raises:
        ValueError: If the method is unknown.
    """
    method = check_ranking_method(ranking_method)
    f = torch.as_tensor(fitnesses)
    if not f.is_floating_point():
        f = f.double()
    return _RANKERS[method](f.reshape(-1), higher_is_better).reshape(f.shape)
