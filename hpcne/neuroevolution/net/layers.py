"""Layers for policy networks, usable by name in network strings (see `str_to_net`)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.spaces import Box
from numpy.typing import ArrayLike
from torch import nn

if TYPE_CHECKING:
    from hpcne.neuroevolution.net.runningstat import RunningStat

__all__ = [
    "LSTM",
    "RNN",
    "ActClipLayer",
    "Apply",
    "Bin",
    "Clip",
    "FeedForwardNet",
    "ObsNormLayer",
    "Round",
    "Slice",
    "reset_module_state",
]


class Clip(nn.Module):
    """Clamps every value into `[lb, ub]`."""

    def __init__(self, lb: float, ub: float) -> None:
        """Initializes the layer.

        Args:
            lb: Lower bound.
            ub: Upper bound.
        """
        super().__init__()
        self.lb = float(lb)
        self.ub = float(ub)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns `x` clamped into `[lb, ub]`."""
        return x.clamp(self.lb, self.ub)

    def extra_repr(self) -> str:
        """Shows the bounds."""
        return f"lb={self.lb}, ub={self.ub}"


class Bin(nn.Module):
    """Maps every value to `lb` or `ub`, whichever is closer; the midpoint maps to `ub`."""

    def __init__(self, lb: float, ub: float) -> None:
        """Initializes the layer.

        Args:
            lb: Value given to inputs below the midpoint of `[lb, ub]`.
            ub: Value given to inputs at or above the midpoint.
        """
        super().__init__()
        self.lb = float(lb)
        self.ub = float(ub)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns `x` with each value replaced by the closer of `lb` and `ub`."""
        return torch.full_like(x, self.lb).masked_fill_(x >= (self.lb + self.ub) / 2, self.ub)

    def extra_repr(self) -> str:
        """Shows the bounds."""
        return f"lb={self.lb}, ub={self.ub}"


class Slice(nn.Module):
    """Takes `x[..., from_index:to_index]`, a slice of the last dimension."""

    def __init__(self, from_index: int, to_index: int) -> None:
        """Initializes the layer.

        Args:
            from_index: First index of the slice.
            to_index: Index where the slice ends (exclusive).
        """
        super().__init__()
        self.from_index = int(from_index)
        self.to_index = int(to_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the slice of the last dimension of `x`."""
        return x[..., self.from_index : self.to_index]

    def extra_repr(self) -> str:
        """Shows the slice bounds."""
        return f"from_index={self.from_index}, to_index={self.to_index}"


class Round(nn.Module):
    """Rounds every value to `ndigits` decimals."""

    def __init__(self, ndigits: int = 0) -> None:
        """Initializes the layer.

        Args:
            ndigits: Number of decimals to keep (negative values round to tens, hundreds...).
        """
        super().__init__()
        self.ndigits = int(ndigits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns `x` rounded to `ndigits` decimals."""
        return torch.round(x, decimals=self.ndigits)

    def extra_repr(self) -> str:
        """Shows the number of decimals."""
        return f"ndigits={self.ndigits}"


_Value = torch.Tensor | float
_Expr = Callable[[torch.Tensor], _Value]

_APPLY_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "exp": torch.exp,
    "log": torch.log,
    "sin": torch.sin,
    "cos": torch.cos,
    "sqrt": torch.sqrt,
    "square": torch.square,
    "sign": torch.sign,
    "floor": torch.floor,
    "ceil": torch.ceil,
}
_APPLY_BINARY_OPS: dict[type[ast.operator], Callable[[_Value, _Value], _Value]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_APPLY_ALLOWED = (
    "numbers, the variable `x`, the operators + - * / ** and unary -, and calls to "
    + ", ".join(sorted([*_APPLY_FUNCTIONS, "clamp"]))
    + " (written `tanh(x)` or `torch.tanh(x)`; clamp takes numeric bounds: `clamp(x, -1, 1)`)"
)


def _as_tensor(value: _Value, like: torch.Tensor) -> torch.Tensor:
    """Returns `value` as a tensor shaped like `like` if it is a plain number."""
    return value if isinstance(value, torch.Tensor) else torch.full_like(like, value)


class _ApplyCompiler:
    """Compiles an element-wise expression in `x` into closures, refusing anything unsafe."""

    def __init__(self, source: str) -> None:
        """Stores the expression source, for quoting it in error messages."""
        self.source = source

    def fail(self, node: ast.AST, found: str) -> ValueError:
        """Builds the error for an unsupported piece of the expression."""
        segment = ast.get_source_segment(self.source, node) or self.source
        return ValueError(
            f"Apply cannot evaluate `{segment}` in the expression {self.source!r}: found {found}. "
            f"Write the expression using only {_APPLY_ALLOWED}."
        )

    def number(self, node: ast.expr) -> float:
        """Returns the value of a (possibly negated) numeric literal."""
        negate = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        literal = node.operand if negate else node
        if not (
            isinstance(literal, ast.Constant)
            and isinstance(literal.value, int | float)
            and not isinstance(literal.value, bool)
        ):
            raise self.fail(node, "a clamp bound that is not a number literal")
        return -float(literal.value) if negate else float(literal.value)

    def compile(self, node: ast.expr) -> _Expr:
        """Returns a closure computing `node` from the input tensor `x`."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.fail(node, f"the {type(node.value).__name__} literal {node.value!r}")
            value = float(node.value)
            return lambda x: value
        if isinstance(node, ast.Name):
            if node.id != "x":
                raise self.fail(node, f"the unknown name `{node.id}` (the only variable is `x`)")
            return lambda x: x
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = self.compile(node.operand)
            return lambda x: -operand(x)
        if isinstance(node, ast.BinOp) and type(node.op) in _APPLY_BINARY_OPS:
            op = _APPLY_BINARY_OPS[type(node.op)]
            left, right = self.compile(node.left), self.compile(node.right)
            return lambda x: op(left(x), right(x))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(node, f"an unsupported {type(node).__name__} expression")

    def call(self, node: ast.Call) -> _Expr:
        """Returns a closure for a call to a whitelisted torch function."""
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "torch":
            name = func.attr
        elif isinstance(func, ast.Name):
            name = func.id
        else:
            raise self.fail(node, "a call of something other than a whitelisted torch function")
        if name == "clamp":
            if node.keywords or len(node.args) != 3:
                raise self.fail(node, "a clamp call that is not of the form `clamp(expr, low, high)`")
            arg = self.compile(node.args[0])
            low, high = self.number(node.args[1]), self.number(node.args[2])
            return lambda x: _as_tensor(arg(x), x).clamp(low, high)
        if name not in _APPLY_FUNCTIONS:
            raise self.fail(node, f"a call to `{name}`, which is not a whitelisted function")
        if node.keywords or len(node.args) != 1:
            raise self.fail(node, f"a call to `{name}` with other arguments than one positional argument")
        func_impl, arg = _APPLY_FUNCTIONS[name], self.compile(node.args[0])
        return lambda x: func_impl(_as_tensor(arg(x), x))


def _compile_apply(expr: str) -> _Expr:
    """Parses and compiles an `Apply` expression."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as err:
        raise ValueError(
            f"Apply expected a Python-syntax expression in `x`, but {expr!r} is not valid syntax "
            f"({err.msg}); write it like 'torch.tanh(x) * 2'."
        ) from err
    fn = _ApplyCompiler(expr).compile(tree.body)
    try:  # Only arithmetic on plain numbers can raise; surface it now rather than during a rollout.
        fn(torch.zeros(1))
    except ArithmeticError as err:
        raise ValueError(
            f"Apply expected an expression that can be computed, but {expr!r} raises "
            f"{type(err).__name__}: {err}; fix the numbers in it."
        ) from err
    return fn


class Apply(nn.Module):
    """Applies an element-wise expression in `x`, such as `"x ** 2"` or `"torch.tanh(x) * 2"`.

    The expression is compiled once, by a small evaluator over its syntax tree that accepts
    numbers, `x`, `+ - * / **`, unary minus and a whitelist of element-wise torch functions;
    it is never passed to `eval`.
    """

    def __init__(self, expr: str) -> None:
        """Initializes the layer.

        Args:
            expr: The expression, in the variable `x`.

        Raises:
            ValueError: If the expression is not valid syntax or uses anything not allowed.
        """
        super().__init__()
        if not isinstance(expr, str):
            raise ValueError(
                f"Apply expected its expression as a string such as 'x ** 2', but found {expr!r}; "
                "pass the expression in quotes."
            )
        self.expr = expr.strip()
        self._fn = _compile_apply(self.expr)

    def __getstate__(self) -> dict[str, Any]:
        """Returns the state without the compiled closures, which cannot be pickled."""
        state = self.__dict__.copy()
        del state["_fn"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restores the state and recompiles the expression."""
        super().__setstate__(state)
        self._fn = _compile_apply(self.expr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the expression evaluated element-wise on `x`."""
        return _as_tensor(self._fn(x), x)

    def extra_repr(self) -> str:
        """Shows the expression."""
        return repr(self.expr)


class _RecurrentLayer(nn.Module):
    """Base of the recurrent layers: EvoTorch's calling convention and parameter layout.

    ``forward(x, h=None)`` returns ``(y, new_h)``: the layer keeps no state, so a policy wrapper
    (:class:`~hpcne.neuroevolution.net.statefulmodule.StatefulModule`) carries ``h`` between
    calls and drops it at an episode start. The parameters are ``weight_ih``, ``weight_hh``,
    ``bias_ih``, ``bias_hh`` (gates stacked in each), which flatten to the same vector as
    EvoTorch's layers and ``torch.nn.RNN``/``torch.nn.LSTM``: a parameter vector saved by
    EvoTorch loads unchanged.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_gates: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Creates the weights and biases of ``num_gates`` gates of ``hidden_size`` units."""
        super().__init__()
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        rows = num_gates * self.hidden_size
        options = {"dtype": dtype, "device": device}
        self.weight_ih = nn.Parameter(torch.empty(rows, self.input_size, **options))
        self.weight_hh = nn.Parameter(torch.empty(rows, self.hidden_size, **options))
        self.bias_ih = nn.Parameter(torch.empty(rows, **options))
        self.bias_hh = nn.Parameter(torch.empty(rows, **options))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def _gates(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``W_ih x + b_ih + W_hh h + b_hh`` for all gates, after checking the input shape."""
        if x.ndim == 0 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expected inputs of shape (..., {self.input_size}), but found "
                f"shape {tuple(x.shape)}; check the size of the layer feeding it."
            )
        return F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        """The initial state for input ``x``: zeros of shape ``(..., hidden_size)``."""
        return x.new_zeros((*x.shape[:-1], self.hidden_size))

    def extra_repr(self) -> str:
        """Shows the sizes."""
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"


class RNN(_RecurrentLayer):
    """Elman recurrent layer: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``; ``forward(x, h)`` gives ``(h', h')``.

    Inputs of shape ``(input_size,)`` or ``(..., input_size)``; ``h=None`` means zeros.
    Parameters: ``hidden * (input + hidden + 2)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Initializes the layer.

        Args:
            input_size: Length of the input vectors.
            hidden_size: Number of hidden units, which is also the output length.
            nonlinearity: "tanh" or "relu".
            dtype: Dtype of the parameters.
            device: Device of the parameters.
        """
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNN expected nonlinearity 'tanh' or 'relu', but found {nonlinearity!r}; pass one of these two."
            )
        super().__init__(input_size, hidden_size, num_gates=1, dtype=dtype, device=device)
        self.nonlinearity = nonlinearity
        self._activation = torch.tanh if nonlinearity == "tanh" else torch.relu

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: returns the new hidden state as both the output and the state."""
        h = self._activation(self._gates(x, self._zeros(x) if h is None else h))
        return h, h

    def extra_repr(self) -> str:
        """Shows the sizes and the nonlinearity."""
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"


class LSTM(_RecurrentLayer):
    """LSTM layer (gate order i, f, g, o); ``forward(x, (h, c))`` gives ``(h', (h', c'))``.

    Shapes work as in :class:`RNN`; ``None`` means zero states. Parameters:
    ``4 * hidden * (input + hidden + 2)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Initializes the layer.

        Args:
            input_size: Length of the input vectors.
            hidden_size: Number of hidden units, which is also the output length.
            dtype: Dtype of the parameters.
            device: Device of the parameters.
        """
        super().__init__(input_size, hidden_size, num_gates=4, dtype=dtype, device=device)

    def forward(
        self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step: returns the new hidden state and ``(hidden, cell)``."""
        h, c = (self._zeros(x), self._zeros(x)) if hidden is None else hidden
        i, f, g, o = self._gates(x, h).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


_ACTIVATIONS: dict[str | None, type[nn.Module] | None] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "linear": None,
    None: None,
}


class FeedForwardNet(nn.Sequential):
    """Stack of `Linear` layers with activations, e.g. `FeedForwardNet(4, [(8, "tanh"), (2, None)])`.

    Submodules are named `layer_i` (the Linear) and `actfunc_i` (its activation, if any).
    """

    def __init__(self, input_size: int, layers: Sequence[Sequence[object]]) -> None:
        """Initializes the network.

        Args:
            input_size: Length of the input vectors.
            layers: One tuple per layer, `(output_size, activation)` or `(output_size, activation, bias)`,
                with activation "tanh", "relu", "sigmoid", "linear" or None, and bias a bool (default True).
        """
        super().__init__()
        for i, spec in enumerate(layers):
            if not isinstance(spec, tuple | list) or len(spec) not in (2, 3):
                raise ValueError(
                    "FeedForwardNet expected each layer as (output_size, activation) or "
                    f"(output_size, activation, bias), but layer {i} is {spec!r}; "
                    "write it as e.g. (64, 'tanh')."
                )
            size, activation, bias = (*spec, True) if len(spec) == 2 else spec
            if activation not in _ACTIVATIONS:
                raise ValueError(
                    f"FeedForwardNet expected an activation among {[*_ACTIVATIONS]}, but layer {i} "
                    f"has {activation!r}; use one of these names."
                )
            self.add_module(f"layer_{i}", nn.Linear(input_size, int(size), bias=bool(bias)))
            activation_class = _ACTIVATIONS[activation]
            if activation_class is not None:
                self.add_module(f"actfunc_{i}", activation_class())
            input_size = int(size)


class ObsNormLayer(nn.Module):
    """Observation normalization `(x - mean) / stdev`, with statistics frozen at construction."""

    def __init__(self, stats: RunningStat, trainable_stats: bool = False) -> None:
        """Initializes the layer from the current mean and stdev of `stats`.

        Args:
            stats: Observation statistics.
            trainable_stats: Store mean and stdev as parameters (evolved) instead of buffers.
        """
        super().__init__()
        self._store(stats.mean, stats.stdev, trainable_stats)

    @classmethod
    def from_arrays(cls, mean: ArrayLike, stdev: ArrayLike, trainable_stats: bool = False) -> ObsNormLayer:
        """Builds the layer from explicit mean and stdev arrays.

        Args:
            mean: Mean to subtract.
            stdev: Standard deviation to divide by.
            trainable_stats: Store mean and stdev as parameters instead of buffers.
        """
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._store(mean, stdev, trainable_stats)
        return layer

    def _store(self, mean: ArrayLike, stdev: ArrayLike, trainable_stats: bool) -> None:
        """Registers mean and stdev as float32 buffers or parameters."""
        mean_t = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        stdev_t = torch.as_tensor(np.asarray(stdev), dtype=torch.float32)
        if mean_t.shape != stdev_t.shape:
            raise ValueError(
                f"ObsNormLayer expected mean and stdev of the same shape, but found {tuple(mean_t.shape)} "
                f"and {tuple(stdev_t.shape)}; pass statistics of one observation space."
            )
        if trainable_stats:
            self.obs_mean = nn.Parameter(mean_t)
            self.obs_stdev = nn.Parameter(stdev_t)
        else:
            self.register_buffer("obs_mean", mean_t)
            self.register_buffer("obs_stdev", stdev_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the normalized observations."""
        return (x - self.obs_mean) / self.obs_stdev

    def extra_repr(self) -> str:
        """Shows the observation shape."""
        return f"shape={tuple(self.obs_mean.shape)}"


class ActClipLayer(nn.Module):
    """Clamps actions into the bounds of a gymnasium `Box` (or of explicit arrays)."""

    def __init__(self, low: Box | ArrayLike, high: ArrayLike | None = None) -> None:
        """Initializes the layer.

        Args:
            low: The action space `Box`, or the lower bounds.
            high: The upper bounds; must be omitted when `low` is a `Box`.
        """
        super().__init__()
        if isinstance(low, Box):
            if high is not None:
                raise ValueError(
                    "ActClipLayer expected either a Box alone or low and high arrays, but found a Box "
                    "and a high array; drop the high argument."
                )
            low, high = low.low, low.high
        elif high is None:
            raise ValueError(
                f"ActClipLayer expected a Box or both low and high bounds, but found only low={low!r}; "
                "pass the high bounds too."
            )
        self.register_buffer("low", torch.as_tensor(np.asarray(low), dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(np.asarray(high), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the actions clamped into `[low, high]`."""
        return torch.clamp(x, self.low, self.high)


def reset_module_state(module: nn.Module) -> None:
    """Calls `reset()` on `module` and on each of its submodules that has one (e.g. `RNN`, `LSTM`).

    Args:
        module: The network to reset, typically at the start of an episode.
    """
    for submodule in module.modules():
        reset = getattr(submodule, "reset", None)
        if callable(reset):
            reset()
