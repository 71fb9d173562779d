"""Safe parser of EvoTorch network strings such as `"Linear(obs_length, 64) >> Tanh()"`."""

from __future__ import annotations

import ast
import difflib
import inspect
from typing import Any

from torch import nn

from hpcne.neuroevolution.net import layers
from hpcne.neuroevolution.net.multilayered import MultiLayered

__all__ = ["NetParsingError", "check_net_string", "str_to_net"]

_OWN_LAYERS: dict[str, type[nn.Module]] = {
    name: getattr(layers, name) for name in layers.__all__ if inspect.isclass(getattr(layers, name))
}
_LITERAL_TYPES = (int, float, str, bool, type(None))
_ALLOWED_VALUES = (
    "numbers, strings, True, False, None, constant names, `name[i]` on a constant, "
    "a minus sign before a number or constant, and tuples or lists of these"
)
_REFUSED_KINDS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.BinOp: "arithmetic or another operator",
    ast.BoolOp: "a boolean operator",
    ast.Compare: "a comparison",
    ast.Lambda: "a lambda",
    ast.Tuple: "a tuple",
    ast.List: "a list",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
}


class NetParsingError(ValueError):
    """Raised when a network string is invalid or uses a construct that is not allowed."""


class _Unknown:
    """The value of a constant that is not known yet, when only the string's form is checked."""


_UNKNOWN = _Unknown()


def _torch_layer(name: str) -> type[nn.Module] | None:
    """Returns the `torch.nn` module class called `name`, or None if there is no such public class."""
    candidate = None if name.startswith("_") else getattr(nn, name, None)
    if inspect.isclass(candidate) and issubclass(candidate, nn.Module):
        return candidate
    return None


def _parameters(layer_class: type[nn.Module]) -> str:
    """Returns the constructor parameters of `layer_class`, without annotations, for error messages."""
    parameters = inspect.signature(layer_class).parameters.values()
    return ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in parameters)


def _layer_names() -> list[str]:
    """Returns every layer name a network string may use."""
    return sorted({*_OWN_LAYERS, *(name for name in dir(nn) if _torch_layer(name) is not None)})


def _lookup_layer(name: str) -> type[nn.Module] | None:
    """Returns the layer class called `name`: hpcne's layers first, then torch.nn."""
    return _OWN_LAYERS.get(name) or _torch_layer(name)


def _describe(node: ast.AST) -> str:
    """Names the kind of construct `node` is, for error messages."""
    if isinstance(node, ast.Name):
        return f"the name `{node.id}`"
    if isinstance(node, ast.Constant):
        return f"a {type(node.value).__name__} literal, which is not allowed"
    if isinstance(node, ast.Call):
        return "a call, which is only allowed for layers in the chain"
    kind = _REFUSED_KINDS.get(type(node), f"an expression of type {type(node).__name__}")
    return f"{kind}, which is not allowed"


class _NetBuilder:
    """Walks the syntax tree of a network string and builds its modules, without evaluating any code."""

    def __init__(self, source: str, constants: dict[str, Any] | None) -> None:
        """Stores the (parenthesized) source, for quoting, and the constants names may refer to.

        With ``constants=None`` only the form is checked: names stand for unknown values and
        layers are looked up but not built.
        """
        self.source = source
        self.constants = constants

    def error(self, node: ast.AST, expected: str, found: str, fix: str) -> NetParsingError:
        """Builds an error quoting the source text of `node`."""
        segment = ast.get_source_segment(self.source, node) or "?"
        # The user's first line is line 2 of the source, which starts with an added "(".
        where = f"line {node.lineno - 1}, column {node.col_offset + 1}"
        return NetParsingError(
            f"Cannot build a network from `{segment}` ({where}): expected {expected}, but found {found}. {fix}"
        )

    def module(self, node: ast.expr) -> nn.Module:
        """Builds the module of a layer call or a `>>` chain."""
        chain = self.flatten(node)
        modules = [self.layer(item) for item in chain]
        return modules[0] if len(modules) == 1 else MultiLayered(*modules)

    def flatten(self, node: ast.expr) -> list[ast.expr]:
        """Returns the operands of a (possibly nested) `>>` chain, in order."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            return self.flatten(node.left) + self.flatten(node.right)
        return [node]

    def layer(self, node: ast.expr) -> nn.Module:
        """Builds one layer from a call such as `Linear(3, 2, bias=False)`."""
        expected = "a layer call such as `Linear(3, 2)` (layers are chained with `>>`)"
        if not isinstance(node, ast.Call):
            if isinstance(node, ast.Name) and _lookup_layer(node.id) is not None:
                raise self.error(node, expected, "a layer name without arguments", f"Write `{node.id}()`.")
            raise self.error(node, expected, _describe(node), "Only layer calls may be chained.")
        if not isinstance(node.func, ast.Name):
            raise self.error(
                node.func,
                "a bare layer name",
                _describe(node.func),
                "Call a layer by its bare name, e.g. `Linear(3, 2)`, not `torch.nn.Linear(3, 2)`.",
            )
        name = node.func.id
        layer_class = _lookup_layer(name)
        if layer_class is None:
            close = difflib.get_close_matches(name, _layer_names(), n=3)
            hint = f"Did you mean {', '.join(close)}?" if close else "Use a torch.nn or hpcne layer name."
            raise self.error(node.func, "the name of an hpcne or torch.nn layer", f"`{name}`", hint)
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error(arg, "plain arguments", "a starred argument", "Write the arguments out.")
            args.append(self.value(arg))
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(keyword, "keyword arguments", "`**` unpacking", "Write the keywords out.")
            kwargs[keyword.arg] = self.value(keyword.value)
        if self.constants is None:
            return nn.Identity()
        try:
            return layer_class(*args, **kwargs)
        except Exception as err:
            raise self.error(
                node,
                f"arguments that {name} accepts",
                f"{type(err).__name__}: {str(err).rstrip('.')}",
                f"Check the arguments against the signature {name}({_parameters(layer_class)}).",
            ) from err

    def value(self, node: ast.expr) -> Any:
        """Returns the value of a layer argument: a literal, a constant, or a tuple or list of them."""
        if isinstance(node, ast.Constant) and isinstance(node.value, _LITERAL_TYPES):
            return node.value
        if isinstance(node, ast.Name):
            return self.constant(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self.negative(node)
        if isinstance(node, ast.Tuple | ast.List):
            items = [self.value(item) for item in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        fix = (
            "Compute the value in Python and pass it as a constant keyword argument of str_to_net."
            if isinstance(node, ast.BinOp)
            else "Replace it with an allowed value, or pass the value as a constant keyword argument."
        )
        raise self.error(node, f"an argument value ({_ALLOWED_VALUES})", _describe(node), fix)

    def constant(self, node: ast.Name) -> Any:
        """Returns the value of a constant name."""
        if self.constants is None:
            return _UNKNOWN
        if node.id not in self.constants:
            close = difflib.get_close_matches(node.id, self.constants, n=1)
            hint = f"Did you mean {close[0]}? " if close else ""
            available = ", ".join(sorted(self.constants)) or "none"
            raise self.error(
                node,
                "a constant name",
                f"the unknown name `{node.id}`",
                f"{hint}Available constants: {available}; pass others as keyword arguments of str_to_net.",
            )
        return self.constants[node.id]

    def subscript(self, node: ast.Subscript) -> Any:
        """Returns `name[index]` for a constant name."""
        if not isinstance(node.value, ast.Name):
            raise self.error(
                node,
                "indexing of a constant name, such as `obs_shape[0]`",
                f"indexing of {_describe(node.value)}",
                "Only index constants passed to str_to_net.",
            )
        if not isinstance(node.slice, ast.Constant | ast.Name | ast.UnaryOp):
            raise self.error(
                node.slice,
                "a simple index (a number or a constant name), such as `obs_shape[0]`",
                _describe(node.slice),
                "Compute the index in Python and pass it as a constant keyword argument of str_to_net.",
            )
        container, index = self.constant(node.value), self.value(node.slice)
        if _UNKNOWN in (container, index):
            return _UNKNOWN
        try:
            return container[index]
        except (IndexError, KeyError, TypeError) as err:
            raise self.error(
                node,
                f"an index valid for the constant `{node.value.id}` = {container!r}",
                f"{type(err).__name__}: {err}",
                "Fix the index.",
            ) from err

    def negative(self, node: ast.UnaryOp) -> int | float:
        """Returns minus a numeric literal or constant."""
        operand = node.operand
        if isinstance(operand, ast.Constant | ast.Name | ast.Subscript):
            number = self.value(operand)
            if number is _UNKNOWN:
                return _UNKNOWN
            if isinstance(number, int | float) and not isinstance(number, bool):
                return -number
        raise self.error(
            node,
            "a minus sign before a number or a numeric constant",
            f"minus applied to {_describe(operand)}",
            "Write the negative number directly, e.g. `-1.5`.",
        )


def _parse(s: str) -> tuple[str, ast.expr]:
    """The parenthesized source of network string ``s`` and its root expression, checked for form."""
    if not isinstance(s, str):
        raise NetParsingError(f"A network string must be a str; got {type(s).__name__}.")
    # Parenthesizing lets the string span lines freely; Python's tokenizer drops the comments.
    source = f"(\n{s}\n)"
    try:
        root = ast.parse(source, mode="eval").body
    except SyntaxError as err:
        line = min(max((err.lineno or 2) - 1, 1), s.count("\n") + 1)
        raise NetParsingError(
            f"Cannot parse the network string {s!r}: expected Python-style syntax such as "
            f"`Linear(4, 8) >> Tanh()`, but found {err.msg} at line {line}. Fix the syntax there."
        ) from err
    # The added parentheses lie outside the root's source range, unless the root is a tuple or a
    # generator expression, or a parenthesis of the string closes them early.
    if root.lineno == 1:
        if isinstance(root, ast.Tuple):
            found = "items separated by commas" if root.elts else "no layer"
        elif isinstance(root, ast.GeneratorExp):
            found = "a generator expression"
        else:
            found = "a closing parenthesis before its opening one"
        raise NetParsingError(
            f"Cannot build a network from {s!r}: expected layers chained with `>>`, such as "
            f"`Linear(4, 8) >> Tanh()`, but found {found}. Write the layers joined by `>>`, "
            "with balanced parentheses."
        )
    return source, root


def check_net_string(s: str) -> None:
    """Check the form of a network string without building it (constants may be unknown yet).

    Catches syntax errors, refused constructs and unknown layer names, so that a problem can
    refuse a bad string when it is constructed rather than at its first evaluation.

    Raises:
        NetParsingError: As :func:`str_to_net` would for the same reason.
    """
    source, root = _parse(s)
    _NetBuilder(source, None).module(root)


def str_to_net(s: str, **constants: Any) -> nn.Module:
    """Builds a network from an EvoTorch network string, without evaluating any code.

    Layers are hpcne's own (`Clip`, `Bin`, `Slice`, `Round`, `Apply`, `RNN`, `LSTM`, `FeedForwardNet`,
    `ObsNormLayer`, `ActClipLayer`) or any `torch.nn` module class, called with literal arguments,
    constants and `name[i]` indexing of constants, and chained with `>>` into a `MultiLayered`
    (an `nn.Sequential` that also carries the hidden states of recurrent layers).
    The string may span several lines and contain `#` comments.

    Args:
        s: The network string, e.g. `"Linear(obs_length, 64) >> Tanh() >> Linear(64, act_length)"`.
        **constants: Values the names in the string refer to, e.g. `obs_length=4`.

    Returns:
        The single layer, or a `MultiLayered` of the chained layers.

    Raises:
        NetParsingError: If the string is not valid syntax or uses anything but the above.
    """
    source, root = _parse(s)
    return _NetBuilder(source, constants).module(root)
