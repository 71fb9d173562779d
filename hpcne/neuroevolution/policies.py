"""Batched policies: evaluate many parameter vectors of one network architecture per call.

A :class:`BatchedPolicy` has ``slots``; each slot holds one solution's parameters. The rollout
engine loads a solution into a slot when the slot starts its episodes and calls the policy
once per environment step on a ``(slots, obs_length)`` array, naming the rows it needs (the
busy slots). A row's output depends only on that row's parameters and observation.

Four implementations (the *policy backends*, chosen by :func:`make_batched_policy`):

- :class:`NumpyMLP` (``"numpy"``) — ``Linear``/element-wise-activation stacks (the usual
  policies); one stacked ``matmul`` per layer on numpy float32 arrays (element-wise products
  column by column for layers with at most 8 inputs), no torch dispatch per step; with only a
  few busy rows, one ``dot`` per row and layer instead. Always on the CPU.
- :class:`TorchMLP` (``"torch"``) — the same stacks in torch on the network's device: one
  ``baddbmm`` per layer over weights stacked on the device. The fast case on a GPU.
- :class:`VmapPolicy` (``"vmap"``) — any module that :func:`torch.func.vmap` can batch:
  ``functional_call`` over parameters stacked on the network's device, with the hidden state of
  recurrent networks (wrapped in a ``StatefulModule``) carried per slot. A probe at construction checks that the
  module batches and agrees with its per-row forward.
- :class:`ModuleLoop` (``"loop"``) — any ``nn.Module``: one module copy per slot, called in turn.

Exactness. ``numpy`` and ``loop`` compute each row with the same kernels whatever the number of
slots, so fitnesses do not depend on ``rollout_batch_size`` (bit for bit). ``torch`` and ``vmap``
use batched kernels (``bmm``) whose float32 sums are not bitwise equal to the per-row forward
(float32 rounding differences), so :func:`make_batched_policy` picks them automatically only on
CUDA devices, where no backend is bitwise reproducible against the CPU anyway.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map

from hpcne.neuroevolution.net import StatefulModule, ensure_stateful, is_recurrent, reset_module_state
from hpcne.neuroevolution.net import layers as hl

__all__ = [
    "POLICY_BACKENDS",
    "BatchedPolicy",
    "ModuleLoop",
    "NotBatchable",
    "NumpyMLP",
    "TorchMLP",
    "VmapPolicy",
    "choose_policy_backend",
    "make_batched_policy",
]

POLICY_BACKENDS = ("auto", "numpy", "torch", "vmap", "loop")
_ACTIVATION_TYPES = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.Identity, nn.Hardtanh, hl.Clip)


class NotBatchable(ValueError):
    """The network cannot be evaluated by the requested batched backend (the message says why)."""


class BatchedPolicy(Protocol):
    """Parameters of several solutions of one architecture, applied to a batch of observations.

    A policy whose class sets ``shrinkable = True`` is stateless and takes the observations of its
    first ``n`` slots alone (``(n, obs_length)``, giving ``n`` rows): the rollout engine then moves
    the episodes still running to the front slots as others end, and calls it on those rows.
    """

    slots: int

    def load(self, slot: int, params: np.ndarray) -> None:
        """Put one solution's flat parameter vector into ``slot``."""
        ...

    def reset(self, slot: int) -> None:
        """Clear the recurrent state of ``slot`` (at an episode start)."""
        ...

    def __call__(self, obs: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """Map ``(slots, obs_length)`` float32 observations to ``(slots, out_length)`` outputs.

        With ``rows``, only those rows of the result are needed (the others may hold anything).
        The result may be a buffer that the next call overwrites.
        """
        ...


Op = tuple[Callable[..., Any], tuple[Any, ...]]  # a numpy call with every argument bound
InPlace = tuple[tuple[Callable[..., Any], tuple[Any, ...]], ...]  # in-place ops: each is ``f(x, *args, out=x)``


def _activation(module: nn.Module) -> InPlace | None:
    """The in-place numpy operations of an element-wise torch activation, or None if unknown.

    Clipping is a maximum then a minimum, which is what ``np.clip`` computes (without its slow dispatch).
    """
    if isinstance(module, nn.Tanh):
        return ((np.tanh, ()),)
    if isinstance(module, nn.ReLU):
        return ((np.maximum, (0.0,)),)
    if isinstance(module, nn.Sigmoid):  # 1 / (1 + exp(-x)) in float32
        return ((np.negative, ()), (np.exp, ()), (np.add, (1.0,)), (np.reciprocal, ()))
    if isinstance(module, nn.Identity):
        return ()
    if isinstance(module, nn.Hardtanh):
        return ((np.maximum, (module.min_val,)), (np.minimum, (module.max_val,)))
    if isinstance(module, hl.Clip):
        return ((np.maximum, (module.lb,)), (np.minimum, (module.ub,)))
    return None


def _torch_activation(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The in-place torch equivalent of one of the element-wise activations of :func:`_mlp_layers`."""
    if isinstance(module, nn.Tanh):
        return torch.Tensor.tanh_
    if isinstance(module, nn.ReLU):
        return torch.Tensor.relu_
    if isinstance(module, nn.Sigmoid):
        return torch.Tensor.sigmoid_
    if isinstance(module, nn.Hardtanh):
        lo, hi = float(module.min_val), float(module.max_val)
        return lambda x: x.clamp_(lo, hi)
    if isinstance(module, hl.Clip):
        lo, hi = module.lb, module.ub
        return lambda x: x.clamp_(lo, hi)
    return lambda x: x  # nn.Identity


def _mlp_layers(net: nn.Module) -> list[tuple[str, Any]] | None:
    """``("linear", (out, in, bias, offset))`` and ``("act", module)`` entries of a Linear/activation stack.

    None if ``net`` is anything else (another layer, parameters outside the Linear layers, no Linear).
    """
    modules = list(net) if isinstance(net, nn.Sequential) else [net]
    layers: list[tuple[str, Any]] = []
    offset = 0
    for m in modules:
        if isinstance(m, nn.Linear):
            layers.append(("linear", (m.out_features, m.in_features, m.bias is not None, offset)))
            offset += m.weight.numel() + (0 if m.bias is None else m.bias.numel())
        elif isinstance(m, _ACTIVATION_TYPES) and not any(True for _ in m.parameters()):
            layers.append(("act", m))
        else:
            return None
    if offset != sum(p.numel() for p in net.parameters()) or not any(k == "linear" for k, _ in layers):
        return None
    return layers


SMALL_FAN_IN = 8  # NumpyMLP: a Linear layer with at most this many inputs is computed column by column


class _Columns:
    """A Linear layer with few inputs (``in_f <= SMALL_FAN_IN``, e.g. the first layer on CartPole's 4
    observations): ``out = w[0] * x[0] + w[1] * x[1] + ...`` in float32, in that order, with
    element-wise numpy operations over all slots.

    A stacked ``matmul`` makes one tiny BLAS call per slot (~130 ns each, most of a 512-slot step
    on CartPole); this is one multiply for all the products and ``in_f - 1`` additions in order
    (2.8 µs at 5 slots, 3.8 µs at 50 on CartPole's first layer, against 5.8 and 6.9 µs for a
    multiply and an addition per column). The row path does the same operations element by
    element, so a row is the same bits whatever the number of slots.
    """

    def __init__(self, slots: int, out_f: int, in_f: int, bias: bool) -> None:
        self.cols = np.zeros((in_f, slots, out_f), np.float32)  # cols[k, slot] = weight[:, k]
        self.bias = np.zeros((slots, out_f), np.float32) if bias else None
        self.out = np.zeros((slots, out_f), np.float32)
        self._tmp = np.zeros((slots, out_f), np.float32)
        self._products = np.zeros((in_f, slots, out_f), np.float32)  # products[k, slot] = weight[:, k] * h[slot, k]
        self._bound: tuple[np.ndarray | None, list[Op], np.ndarray] = (None, [], self.out)  # input, ops, output

    def load(self, slot: int, weight: np.ndarray, bias: np.ndarray | None) -> None:
        """Put one slot's ``(out, in)`` weight and its bias."""
        self.cols[:, slot] = weight.T
        if self.bias is not None:
            self.bias[slot] = bias

    def bind(self, h: np.ndarray) -> tuple[list[Op], np.ndarray]:
        """The calls that compute the rows of the first ``n`` slots for their input ``h`` ``(n, in)``, and
        their output array ``(n, out)``."""
        n = len(h)
        out, products = self.out[:n], self._products[:, :n]
        ops: list[Op] = [(np.multiply, (self.cols[:, :n], h.T[:, :, None], products))]
        if len(products) == 1:
            ops.append((np.copyto, (out, products[0])))
        else:  # added in order, as the row path does (a reduction may pair them otherwise)
            ops.append((np.add, (products[0], products[1], out)))
            ops += [(np.add, (out, products[k], out)) for k in range(2, len(products))]
        if self.bias is not None:
            ops.append((np.add, (out, self.bias[:n], out)))
        return ops, out

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """The rows of the first ``len(h)`` slots."""
        if h is not self._bound[0]:
            self._bound = h, *self.bind(h)
        for f, args in self._bound[1]:
            f(*args)
        return self._bound[2]

    def row(self, h: np.ndarray, r: int) -> np.ndarray:
        """Row ``r`` of the output for that row's input ``h`` ``(in,)``, with :meth:`__call__`'s operations."""
        out, tmp, cols = self.out[r], self._tmp[r], self.cols
        np.multiply(cols[0, r], h[0], out=out)
        for k in range(1, len(cols)):
            np.multiply(cols[k, r], h[k], out=tmp)
            np.add(out, tmp, out=out)
        if self.bias is not None:
            np.add(out, self.bias[r], out=out)
        return out


class _Stacked:
    """A Linear layer as one stacked ``matmul`` over the slots' ``(out, in)`` weights: one BLAS ``gemv`` per
    slot, the same call as the row path's ``dot``, so a row is the same bits either way."""

    def __init__(self, slots: int, out_f: int, in_f: int, bias: bool) -> None:
        self.weight = np.zeros((slots, out_f, in_f), np.float32)
        self.bias = np.zeros((slots, out_f), np.float32) if bias else None
        self._buffer = np.zeros((slots, out_f, 1), np.float32)
        self.out = self._buffer[:, :, 0]

    def load(self, slot: int, weight: np.ndarray, bias: np.ndarray | None) -> None:
        """Put one slot's ``(out, in)`` weight and its bias."""
        self.weight[slot] = weight
        if self.bias is not None:
            self.bias[slot] = bias

    def bind(self, h: np.ndarray) -> tuple[list[Op], np.ndarray]:
        """The calls that compute the rows of the first ``n`` slots for their input ``h`` ``(n, in)``, and
        their output array ``(n, out)``."""
        n = len(h)
        out = self.out[:n]
        ops: list[Op] = [(np.matmul, (self.weight[:n], h[:, :, None], self._buffer[:n]))]
        if self.bias is not None:
            ops.append((np.add, (out, self.bias[:n], out)))
        return ops, out

    def row(self, h: np.ndarray, r: int) -> np.ndarray:
        """Row ``r`` of the output for that row's input ``h`` ``(in,)``."""
        row = self.out[r]
        np.dot(self.weight[r], h, out=row)
        if self.bias is not None:
            np.add(row, self.bias[r], out=row)
        return row


class _Activation:
    """An element-wise activation, applied in place: each of its ops is ``f(x, *args, out=x)`` (``out`` by
    keyword: numpy deprecates a positional one for ``maximum`` and ``minimum``)."""

    def __init__(self, ops: InPlace) -> None:
        self.ops = ops

    def bind(self, h: np.ndarray) -> tuple[list[Op], np.ndarray]:
        """The calls that apply it to ``h`` in place, and ``h``."""
        return [(functools.partial(f, out=h), (h, *args)) for f, args in self.ops], h

    def row(self, h: np.ndarray, r: int) -> np.ndarray:
        """Apply it to the row ``h`` in place."""
        for f, args in self.ops:
            f(h, *args, out=h)
        return h


class NumpyMLP:
    """A stack of Linear layers and element-wise activations, evaluated with numpy.

    Every layer writes into a buffer allocated once, so a call allocates nothing; the returned
    array is that buffer and is overwritten by the next call. Each slot's matrix-vector product
    is one BLAS ``gemv`` whether it is computed in a stacked ``matmul`` (many busy rows) or by
    ``dot`` (few busy rows, or one slot), so a solution's outputs are the same bits either way
    (tests/neuroevolution/test_batched_policies.py checks this). Layers with at most
    :data:`SMALL_FAN_IN` inputs are :class:`_Columns` instead (element-wise, the same bits too).

    The stacked path is a list of numpy calls with every operand bound, made once per input array
    (the rollout engine passes the same one at every step): on CartPole's network at 5 slots, its
    8 calls take 6.9 µs where looking up the buffers and views at each call took 10.9 µs.

    It is *shrinkable*: stateless, and a call may pass the observations of the first ``n`` slots
    only (``n <= slots``) and gets their ``n`` rows, so the rollout engine can move the episodes
    still running to the front slots and step a smaller batch.
    """

    shrinkable = True

    def __init__(self, plan: list[tuple[str, object]], slots: int) -> None:
        self.slots = slots
        self._plan = plan  # ("linear", (out, in, bias, offset)) or ("act", ops)
        self._steps: list[_Columns | _Stacked | _Activation] = []
        self._copy_input = plan[0][0] != "linear"  # a leading activation must not work on the caller's array
        for kind, spec in plan:
            if kind == "linear":
                out_f, in_f, bias, _ = spec  # type: ignore[misc]
                layer = _Columns if in_f <= SMALL_FAN_IN else _Stacked
                self._steps.append(layer(slots, out_f, in_f, bias))
            else:
                self._steps.append(_Activation(spec))  # type: ignore[arg-type]
        self._layers = [step for step in self._steps if not isinstance(step, _Activation)]
        self._out = self._layers[-1].out  # a trailing activation works in place on it
        self._bound: tuple[np.ndarray | None, list[Op], np.ndarray] = (None, [], self._out)  # input, calls, output
        # Up to this many busy rows are computed row by row. After a _Columns first layer, which the row path
        # computes for all rows too, a row costs about what the later layers cost for all slots at 32 slots:
        # on CartPole's and Pendulum's networks, 1 row of 16 slots, 2 of 64 and 4 of 128 are cheaper row by row.
        self._few_rows = max(1, slots // (32 if isinstance(self._steps[0], _Columns) else 8))

    @classmethod
    def plan_for(cls, net: nn.Module) -> list[tuple[str, object]] | None:
        """Return the layer plan of ``net`` if it is a Linear/activation stack, else None."""
        layers = _mlp_layers(net)
        if layers is None:
            return None
        return [(kind, spec if kind == "linear" else _activation(spec)) for kind, spec in layers]  # type: ignore[arg-type]

    def load(self, slot: int, params: np.ndarray) -> None:
        """Copy the parameter vector into the slot's weight matrices."""
        specs = (spec for kind, spec in self._plan if kind == "linear")
        for layer, (out_f, in_f, _bias, offset) in zip(self._layers, specs):  # type: ignore[misc]
            n_w = out_f * in_f
            weight = params[offset : offset + n_w].reshape(out_f, in_f)
            layer.load(slot, weight, params[offset + n_w : offset + n_w + out_f])

    def reset(self, slot: int) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """Apply the slots' networks to their rows of ``obs`` (only ``rows``, when given)."""
        if self.slots == 1 or (rows is not None and len(rows) <= self._few_rows):
            first = 0
            if self.slots > 1 and isinstance(self._steps[0], _Columns):
                obs, first = self._steps[0](obs), 1  # all rows at once: cheaper than a few rows column by column
            for r in range(len(obs)) if rows is None else rows:
                self._row(obs, r, first)
            return self._out[: len(obs)]
        if obs is not self._bound[0]:
            self._bound = obs, *self._bind(obs)
        for f, args in self._bound[1]:
            f(*args)
        return self._bound[2]

    def _bind(self, obs: np.ndarray) -> tuple[list[Op], np.ndarray]:
        """The stacked path's calls for the input ``obs`` (the first ``len(obs)`` slots), every operand
        bound, and the array they leave the output in."""
        ops: list[Op] = []
        h = obs
        if self._copy_input:
            h = np.empty_like(obs)
            ops.append((np.copyto, (h, obs)))
        for step in self._steps:
            step_ops, h = step.bind(h)
            ops += step_ops
        return ops, h

    def _row(self, obs: np.ndarray, r: int, first: int = 0) -> None:
        """Compute row ``r`` of the output with one ``dot`` per layer, from the input of step ``first``."""
        h = obs[r].copy() if self._copy_input and first == 0 else obs[r]
        for step in self._steps[first:]:
            h = step.row(h, r)


class ModuleLoop:
    """Any module: one copy per slot, each called on its own observation row."""

    def __init__(self, net: nn.Module, slots: int) -> None:
        self.slots = slots
        self._nets = [copy.deepcopy(net) for _ in range(slots)]
        self._device = next((p.device for p in net.parameters()), torch.device("cpu"))

    def load(self, slot: int, params: np.ndarray) -> None:
        """Copy the parameter vector into the slot's module."""
        vec = torch.from_numpy(np.ascontiguousarray(params)).to(self._device)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vec, self._nets[slot].parameters())

    def reset(self, slot: int) -> None:
        """Clear the slot's recurrent state."""
        reset_module_state(self._nets[slot])

    def __call__(self, obs: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """Call the slots' modules (only those of ``rows``, when given) on their observations."""
        x = torch.from_numpy(obs).to(self._device)
        rows = range(self.slots) if rows is None else rows
        outputs = {}
        with torch.no_grad():
            for i in rows:
                try:
                    outputs[i] = self._nets[i](x[i]).reshape(-1)
                except Exception as err:
                    err.hpcne_slot = i  # type: ignore[attr-defined]  # lets the engine name the solution
                    raise
        stacked = torch.stack(list(outputs.values())).to(torch.float32).cpu().numpy()
        if len(outputs) == self.slots:
            return stacked
        result = np.zeros((self.slots, stacked.shape[1]), np.float32)
        result[list(outputs)] = stacked
        return result


def _device_of(net: nn.Module) -> torch.device:
    """The device of the network's first parameter (the CPU for a network without any)."""
    return next((p.device for p in net.parameters()), torch.device("cpu"))


def _to_numpy(out: torch.Tensor) -> np.ndarray:
    """A float32 ``(slots, n)`` numpy array of a policy output; one device-to-host copy on a GPU."""
    return out.to(dtype=torch.float32, device="cpu").numpy()


class TorchMLP:
    """A stack of Linear layers and element-wise activations in torch, on the network's device.

    The weights of all slots are stacked on the device, ``(slots, out, in)`` per layer; a call
    uploads the observations as one array, runs one ``baddbmm`` (``bmm`` without bias) per
    layer into buffers allocated once and in-place activations, and brings the actions back as
    one array. All rows are computed every call (fixed shapes, which suit a GPU); the rows of
    finished episodes are simply not used. Rows agree with the per-row forward up to float32
    rounding, not bit for bit.
    """

    def __init__(self, plan: list[tuple[str, Any]], slots: int, device: torch.device | str = "cpu") -> None:
        self.slots = slots
        self.device = torch.device(device)
        self._plan = plan  # ("linear", (out, in, bias, offset)) or ("act", in-place torch fn)
        self._steps: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | Callable] = []
        self._linears: list[tuple[torch.Tensor, torch.Tensor | None, int, int, int]] = []
        for kind, spec in plan:
            if kind == "linear":
                out_f, in_f, bias, offset = spec
                weight = torch.zeros((slots, out_f, in_f), device=self.device)
                b = torch.zeros((slots, out_f, 1), device=self.device) if bias else None
                self._steps.append((weight, b, torch.zeros((slots, out_f, 1), device=self.device)))
                self._linears.append((weight, b, out_f, in_f, offset))
            else:
                self._steps.append(spec)
        self._copy_input = plan[0][0] != "linear"  # a leading activation must not change the caller's array

    @classmethod
    def plan_for(cls, net: nn.Module) -> list[tuple[str, Any]] | None:
        """Return the layer plan of ``net`` if it is a Linear/activation stack, else None."""
        layers = _mlp_layers(net)
        if layers is None:
            return None
        return [(kind, spec if kind == "linear" else _torch_activation(spec)) for kind, spec in layers]

    def load(self, slot: int, params: np.ndarray) -> None:
        """Copy the parameter vector (uploaded once) into the slot's stacked weights."""
        vec = torch.from_numpy(np.ascontiguousarray(params, np.float32)).to(self.device)
        for weight, bias, out_f, in_f, offset in self._linears:
            n_w = out_f * in_f
            weight[slot].copy_(vec[offset : offset + n_w].view(out_f, in_f))
            if bias is not None:
                bias[slot, :, 0].copy_(vec[offset + n_w : offset + n_w + out_f])

    def reset(self, slot: int) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """Apply all slots' networks to their rows of ``obs`` (``rows`` is not needed: all are computed)."""
        return _to_numpy(self.forward_tensor(torch.from_numpy(obs)))

    def forward_tensor(self, obs: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` on a ``(slots, obs_length)`` float32 tensor; the result stays on the device.

        The result is a buffer that the next call overwrites.
        """
        x = obs.to(self.device)
        if self._copy_input and x.data_ptr() == obs.data_ptr():
            x = x.clone()
        h = x.unsqueeze(2)
        with torch.no_grad():
            for step in self._steps:
                if isinstance(step, tuple):
                    weight, bias, buffer = step
                    if bias is None:
                        torch.bmm(weight, h, out=buffer)
                    else:
                        torch.baddbmm(bias, weight, h, out=buffer)
                    h = buffer
                else:
                    h = step(h)
        return h.squeeze(2)


def _input_length(net: nn.Module) -> int | None:
    """The input length of the first layer that declares one (``in_features``, ``input_size``), if any."""
    for m in net.modules():
        for name in ("in_features", "input_size"):
            value = getattr(m, name, None)
            if isinstance(value, int):
                return value
    return None


class VmapPolicy:
    """Any module that ``torch.func.vmap`` can batch: ``functional_call`` over stacked parameters.

    The parameters of all slots are stacked on the network's device, ``(slots, *shape)`` per
    parameter (buffers stay shared); a call uploads the observations as one array, runs the
    module once under ``vmap`` and brings the outputs back as one array. All rows are computed
    every call; the rows of finished episodes are not used. The hidden states of recurrent
    networks (the ``StatefulModule`` wrappers GymNE puts around them) are stacked per slot too:
    they go into the wrappers before the call and come out after it, inside ``vmap``, and
    ``reset(slot)`` zeroes them.

    Construction probes the module (``probe=True``): two consecutive calls on two slots with
    random parameters must run under ``vmap`` and agree with the module's own per-row forward
    within float32 tolerance. Modules with data-dependent control flow, with other state kept
    between calls (a ``reset()`` method other than ``StatefulModule``'s), or that
    otherwise behave differently when batched fail the probe with :class:`NotBatchable`.
    """

    def __init__(self, net: nn.Module, slots: int, obs_length: int | None = None, *, probe: bool = True) -> None:
        obs_length = self.check(net, obs_length, probe=probe)
        self.slots = slots
        self.obs_length = obs_length
        self._net = copy.deepcopy(net)
        self._device = _device_of(net)
        self._layout: list[tuple[str, int, int, torch.Size]] = []
        self._params: dict[str, torch.Tensor] = {}
        offset = 0
        for name, p in self._net.named_parameters():
            self._layout.append((name, offset, p.numel(), p.shape))
            self._params[name] = torch.zeros((slots, *p.shape), dtype=p.dtype, device=self._device)
            offset += p.numel()
        self._recurrent = [m for m in self._net.modules() if isinstance(m, StatefulModule)]
        self._batched = torch.func.vmap(self._forward)
        with torch.no_grad():  # learn the shapes of the hidden states from one unbatched forward
            one = {name: p[0] for name, p in self._params.items()}
            x = torch.zeros(obs_length, device=self._device)
            _, first = self._forward(one, tuple(None for _ in self._recurrent), x)  # type: ignore[arg-type]
        # A zero state is what hpcne's RNN/LSTM start from; states are any nest of tensors.
        self._states = tree_map(lambda t: t.new_zeros((slots, *t.shape)), first)

    @staticmethod
    def check(net: nn.Module, obs_length: int | None = None, *, probe: bool = True) -> int:
        """Raise :class:`NotBatchable` if ``net`` cannot be batched by vmap; return the input length used.

        Refused without a probe: modules with a ``reset()`` method other than ``StatefulModule``'s
        (state vmap cannot carry). With ``probe``: see the class docstring.
        """
        obs_length = obs_length if obs_length is not None else _input_length(net)
        if obs_length is None:
            raise NotBatchable("The vmap backend needs the observation length (obs_length) to probe the network.")
        stateful = [
            type(m).__name__
            for m in net.modules()
            if callable(getattr(m, "reset", None)) and not isinstance(m, StatefulModule)
        ]
        if stateful:
            raise NotBatchable(
                f"vmap cannot carry the state of {', '.join(sorted(set(stateful)))} (a layer with a reset() "
                "method other than StatefulModule's)."
            )
        if probe:
            _probe_vmap(net, obs_length)
        return obs_length

    def _forward(
        self, params: dict[str, torch.Tensor], states: tuple[tuple[torch.Tensor, ...] | None, ...], x: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, ...], ...]]:
        """One sample: the module's output (flat) and the new hidden states of its recurrent layers."""
        layers = self._recurrent
        try:
            for layer, state in zip(layers, states):
                layer._hidden = state
            out = torch.func.functional_call(self._net, params, (x,))
            new_states = tuple(layer._hidden for layer in layers)
        finally:
            for layer in layers:
                layer._hidden = None
        return out.reshape(-1), new_states  # type: ignore[return-value]

    def load(self, slot: int, params: np.ndarray) -> None:
        """Copy the parameter vector (uploaded once) into the slot's stacked parameters."""
        vec = torch.from_numpy(np.ascontiguousarray(params)).to(self._device)
        for name, offset, numel, shape in self._layout:
            self._params[name][slot].copy_(vec[offset : offset + numel].view(shape))

    def reset(self, slot: int) -> None:
        """Zero the slot's recurrent state (what a fresh layer starts from)."""
        for t in tree_leaves(self._states):
            t[slot].zero_()

    def __call__(self, obs: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """Apply all slots' networks to their rows of ``obs`` (``rows`` is not needed: all are computed)."""
        return _to_numpy(self.forward_tensor(torch.from_numpy(obs)))

    def forward_tensor(self, obs: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` on a ``(slots, obs_length)`` float32 tensor; the result stays on the device."""
        with torch.no_grad():
            out, states = self._batched(self._params, self._states, obs.to(self._device))
        if self._states:
            self._states = states
        return out


def _tensor_attributes(net: nn.Module) -> dict[str, object]:
    """Plain attributes of the modules of ``net`` that hold tensors (not parameters or buffers): their state."""
    found: dict[str, object] = {}
    for path, module in net.named_modules():
        for key, value in vars(module).items():
            if isinstance(value, torch.Tensor) or (
                isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value)
            ):
                found[f"{type(module).__name__}.{key}" + (f" (submodule {path!r})" if path else "")] = value
    return found


def _probe_vmap(net: nn.Module, obs_length: int) -> None:
    """Raise :class:`NotBatchable` unless ``vmap`` runs ``net`` and agrees with its per-row forward twice in a row."""
    generator = torch.Generator().manual_seed(0)
    length = sum(p.numel() for p in net.parameters())
    params = (0.5 * torch.randn((2, length), generator=generator)).numpy()
    obs = torch.randn((2, obs_length), generator=generator).numpy()
    try:
        batched = VmapPolicy(net, 2, obs_length, probe=False)
        reference = ModuleLoop(net, 2)
        for slot in range(2):
            for policy in (batched, reference):
                policy.load(slot, params[slot])
                policy.reset(slot)
        for step in range(2):
            before = _tensor_attributes(batched._net)
            got, expected = batched(obs).copy(), reference(obs)
            changed = [key for key, value in _tensor_attributes(batched._net).items() if before.get(key) is not value]
            if changed:
                raise NotBatchable(
                    f"vmap cannot carry the state that {', '.join(sorted(set(changed)))} keeps between calls."
                )
            if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4, equal_nan=True):
                raise NotBatchable(
                    f"under vmap the network gives other outputs than its own forward (step {step + 1} of the probe)."
                )
    except NotBatchable:
        raise
    except Exception as err:
        raise NotBatchable(f"vmap cannot batch this network: {type(err).__name__}: {err}") from err


def _stepwise(net: nn.Module) -> nn.Module:
    """``net`` callable with observations only: a recurrent network gets a wrapper keeping its state."""
    return ensure_stateful(net) if is_recurrent(net) else net


def choose_policy_backend(
    net: nn.Module, device: torch.device | str | None = None, obs_length: int | None = None
) -> str:
    """The backend that ``"auto"`` picks for ``net`` on ``device`` (default: the network's device).

    On the CPU: ``"numpy"`` for Linear/activation stacks, else ``"loop"`` — both give the same
    bits whatever the number of slots, and ``"vmap"``'s batched float32 products are not bitwise
    equal to the per-row forward. On any other device (a GPU): ``"torch"`` for Linear/activation
    stacks, else ``"vmap"`` if the network passes the vmap probe, else ``"loop"``.
    """
    net = _stepwise(net)
    device = _device_of(net) if device is None else torch.device(device)
    mlp = _mlp_layers(net) is not None
    if device.type == "cpu":
        return "numpy" if mlp else "loop"
    if mlp:
        return "torch"
    try:
        VmapPolicy.check(net, obs_length)
    except NotBatchable:
        return "loop"
    return "vmap"


def make_batched_policy(
    net: nn.Module, slots: int, *, kind: str = "auto", obs_length: int | None = None
) -> BatchedPolicy:
    """Build a batched policy for ``net`` with the backend ``kind``.

    Args:
        net: The network template (its parameters are not used), on the device to evaluate on. A
            recurrent network (``forward(x, h) -> (y, h)``) is wrapped to carry its hidden state.
        slots: How many solutions are evaluated side by side.
        kind: One of :data:`POLICY_BACKENDS`: ``"auto"`` (see :func:`choose_policy_backend`),
            ``"numpy"`` (Linear/activation stacks, computed on the CPU), ``"torch"``
            (Linear/activation stacks on the network's device), ``"vmap"`` (modules that pass
            the vmap probe, on the network's device) or ``"loop"`` (any module; ``"module"`` is
            an alias). An explicit kind that cannot handle ``net`` raises :class:`NotBatchable`.
        obs_length: Input length, for the vmap probe (default: the first layer's input size).

    Returns:
        A batched policy.
    """
    net = _stepwise(net)
    if kind == "module":
        kind = "loop"
    if kind not in POLICY_BACKENDS:
        choices = ", ".join(repr(k) for k in POLICY_BACKENDS)
        raise ValueError(f"policy kind (policy_backend) must be one of {choices}; got {kind!r}.")
    probed = kind == "auto"  # the automatic choice has already run the vmap probe
    if kind == "auto":
        kind = choose_policy_backend(net, obs_length=obs_length)
    if kind == "numpy":
        plan = NumpyMLP.plan_for(net)
        if plan is None:
            raise NotBatchable(f"The numpy fast path handles Linear/activation stacks; this network is not one:\n{net}")
        return NumpyMLP(plan, slots)
    if kind == "torch":
        torch_plan = TorchMLP.plan_for(net)
        if torch_plan is None:
            raise NotBatchable(
                "The torch batched MLP handles Linear/activation stacks; this network is not one (try "
                f"policy_backend='vmap' or 'loop'):\n{net}"
            )
        return TorchMLP(torch_plan, slots, _device_of(net))
    if kind == "vmap":
        return VmapPolicy(net, slots, obs_length, probe=not probed)
    return ModuleLoop(net, slots)
