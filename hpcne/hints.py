"""Suggestions for mistyped names: "Did you mean ...?" that also knows abbreviations (``lr``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest_name", "did_you_mean"]


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name that ``name`` most likely meant, or None.

    An abbreviation wins over a spelling match: ``center_lr`` means ``center_learning_rate`` (``lr``
    are the initials of ``learning_rate``), ``stdev_lr`` means ``stdev_learning_rate``, ``pop`` means
    ``popsize``. Otherwise the closest spelling (difflib) is taken.
    """
    known = list(known)
    words = _words(name)
    abbreviated = [candidate for candidate in known if _abbreviates(words, _words(candidate))]
    if len(abbreviated) == 1:
        return abbreviated[0]
    close = difflib.get_close_matches(name, abbreviated or known, n=1)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str], *, what: str = "options") -> str:
    """`` Did you mean 'x'?`` or, with no close name, `` Known options: a, b, c.``"""
    known = list(known)
    close = closest_name(name, known)
    return f" Did you mean {close!r}?" if close else f" Known {what}: {', '.join(known)}."


def _words(name: str) -> list[str]:
    return [word for word in name.lower().replace("-", "_").split("_") if word]


def _abbreviates(short: list[str], full: list[str]) -> bool:
    """Whether each word of ``short`` is a prefix of one word of ``full``, or the initials of several."""
    if not short:
        return not full
    if not full:
        return False
    word, rest = short[0], short[1:]
    if full[0].startswith(word) and _abbreviates(rest, full[1:]):
        return True
    return any(
        word == "".join(w[0] for w in full[:count]) and _abbreviates(rest, full[count:])
        for count in range(2, len(full) + 1)
    )
