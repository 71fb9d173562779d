"""Hooks: lists of functions called together, whose dict or list results are accumulated."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Hook"]


class Hook(list):
    """A list of functions called together (EvoTorch's ``Hook``).

    Calling the hook calls every function in order with the hook's own ``args``/``kwargs`` plus
    the call's. Dicts the functions return are merged, lists are concatenated; the hook returns
    the accumulated result, or None when every function returned None.
    """

    def __init__(
        self,
        callables: Iterable[Callable[..., Any]] = (),
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the hook.

        Args:
            callables: The functions, in calling order.
            args: Positional arguments passed first to every function on every call.
            kwargs: Keyword arguments passed to every function (a call's own keywords win).
        """
        super().__init__(callables)
        self.args = list(args)
        self.kwargs = dict(kwargs or {})

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any] | list[Any] | None:
        """Call every function and return their accumulated dict or list results (or None).

        Raises:
            TypeError: If a function returns something other than a dict, a list-like or None,
                or if some functions return dicts and others lists.
        """
        call_args = (*self.args, *args)
        call_kwargs = {**self.kwargs, **kwargs}
        result: dict[str, Any] | list[Any] | None = None
        for function in self:
            returned = function(*call_args, **call_kwargs)
            if returned is None:
                continue
            if isinstance(returned, Mapping):
                kind: type = dict
            elif isinstance(returned, Iterable) and not isinstance(returned, (str, bytes)):
                kind = list
            else:
                raise TypeError(
                    f"Hook function {function!r} returned a {type(returned).__name__}; "
                    "hook functions must return a dict, a list or None."
                )
            if result is None:
                result = kind()
            elif not isinstance(result, kind):
                raise TypeError(
                    f"Hook function {function!r} returned a {kind.__name__} but earlier functions of this "
                    f"hook returned a {type(result).__name__}; a hook's results must all be dicts or all lists."
                )
            if kind is dict:
                result.update(returned)  # type: ignore[union-attr]
            else:
                result.extend(returned)  # type: ignore[union-attr]
        return result

    def __repr__(self) -> str:
        return f"Hook({list(self)!r}, args={self.args!r}, kwargs={self.kwargs!r})"
