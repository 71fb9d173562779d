"""Batched policies: evaluate many parameter vectors of one network architecture per call.

A :class:`BatchedPolicy` has ``slots``; each slot holds one solution's parameters. The rollout
engine loads a solution into a slot when the slot starts its episodes and calls the policy
once per environment step on a ``(slots, obs_length)`` array, naming the rows it needs (the
busy slots). A row's output depends only on that row's parameters and observation, so a
solution gets the same actions whether it shares the call with 63 others or runs alone: this
is what makes batched and per-solution evaluation give identical fitnesses.

Two implementations:

- :class:`NumpyMLP` — for ``Linear``/element-wise-activation stacks (the usual policies); one
  stacked ``matmul`` per layer on numpy float32 arrays, no torch dispatch per step; with only
  a few busy rows, one ``dot`` per row and layer instead.
- :class:`ModuleLoop` — any ``nn.Module``: one module copy per slot, called in turn.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import nn

from hpcne.neuroevolution.net import layers as hl
from hpcne.neuroevolution.net import reset_module_state

__all__ = ["BatchedPolicy", "ModuleLoop", "NumpyMLP", "make_batched_policy"]


class BatchedPolicy(Protocol):
    """Parameters of several solutions of one architecture, applied to a batch of observations."""

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


def _clip_fn(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.clip(x, lo, hi, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32, in place."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    np.add(x, 1.0, out=x)
    return np.reciprocal(x, out=x)


def _activation(module: nn.Module) -> Callable[[np.ndarray], np.ndarray] | None:
    """The in-place numpy equivalent of an element-wise torch activation, or None if unknown."""
    if isinstance(module, nn.Tanh):
        return lambda x: np.tanh(x, out=x)
    if isinstance(module, nn.ReLU):
        return lambda x: np.maximum(x, 0.0, out=x)
    if isinstance(module, nn.Sigmoid):
        return _sigmoid
    if isinstance(module, nn.Identity):
        return lambda x: x
    if isinstance(module, nn.Hardtanh):
        return _clip_fn(module.min_val, module.max_val)
    if isinstance(module, hl.Clip):
        return _clip_fn(module.lb, module.ub)
    return None


class NumpyMLP:
    """A stack of Linear layers and element-wise activations, evaluated with numpy.

    Every layer writes into a buffer allocated once, so a call allocates nothing; the returned
    array is that buffer and is overwritten by the next call. Each slot's matrix-vector product
    is one BLAS ``gemv`` whether it is computed in a stacked ``matmul`` (many busy rows) or by
    ``dot`` (few busy rows, or one slot), so a solution's outputs are the same bits either way
    (tests/neuroevolution/test_batched_policies.py checks this).
    """

    def __init__(self, plan: list[tuple[str, object]], slots: int) -> None:
        self.slots = slots
        self._plan = plan  # ("linear", (out, in, bias, offset)) or ("act", fn)
        self._weights: list[np.ndarray] = []
        self._biases: list[np.ndarray | None] = []
        self._steps: list[tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray] | Callable] = []
        self._copy_input = plan[0][0] != "linear"  # a leading activation must not work on the caller's array
        for kind, spec in plan:
            if kind == "linear":
                out_f, in_f, bias, _ = spec  # type: ignore[misc]
                weight = np.zeros((slots, out_f, in_f), np.float32)
                b = np.zeros((slots, out_f), np.float32) if bias else None
                buffer = np.zeros((slots, out_f, 1), np.float32)
                self._weights.append(weight)
                self._biases.append(b)
                self._steps.append((weight, b, buffer, buffer[:, :, 0]))
            else:
                self._steps.append(spec)  # type: ignore[arg-type]
        self._out = next(step[3] for step in reversed(self._steps) if isinstance(step, tuple))
        self._few_rows = max(1, slots // 8)  # up to this many busy rows: row by row

    @classmethod
    def plan_for(cls, net: nn.Module) -> list[tuple[str, object]] | None:
        """Return the layer plan of ``net`` if it is a Linear/activation stack, else None."""
        modules = list(net) if isinstance(net, nn.Sequential) else [net]
        plan: list[tuple[str, object]] = []
        offset = 0
        for m in modules:
            if isinstance(m, nn.Linear):
                plan.append(("linear", (m.out_features, m.in_features, m.bias is not None, offset)))
                offset += m.weight.numel() + (0 if m.bias is None else m.bias.numel())
            elif (fn := _activation(m)) is not None and not any(True for _ in m.parameters()):
                plan.append(("act", fn))
            else:
                return None
        if offset != sum(p.numel() for p in net.parameters()) or not any(k == "linear" for k, _ in plan):
            return None
        return plan

    def load(self, slot: int, params: np.ndarray) -> None:
        """Copy the parameter vector into the slot's weight matrices."""
        layer = 0
        for kind, spec in self._plan:
            if kind != "linear":
                continue
            out_f, in_f, _bias, offset = spec  # type: ignore[misc]
            n_w = out_f * in_f
            self._weights[layer][slot] = params[offset : offset + n_w].reshape(out_f, in_f)
            b = self._biases[layer]
            if b is not None:
                b[slot] = params[offset + n_w : offset + n_w + out_f]
            layer += 1

    def reset(self, slot: int) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """Apply the slots' networks to their rows of ``obs`` (only ``rows``, when given)."""
        if self.slots == 1 or (rows is not None and len(rows) <= self._few_rows):
            for r in range(self.slots) if rows is None else rows:
                self._row(obs, r)
            return self._out
        h = obs.copy() if self._copy_input else obs
        for step in self._steps:
            if isinstance(step, tuple):
                weight, bias, buffer, result = step
                np.matmul(weight, h[:, :, None], out=buffer)
                if bias is not None:
                    np.add(result, bias, out=result)
                h = result
            else:
                h = step(h)
        return h

    def _row(self, obs: np.ndarray, r: int) -> None:
        """Compute row ``r`` of the output with one ``dot`` per layer."""
        h = obs[r].copy() if self._copy_input else obs[r]
        for step in self._steps:
            if isinstance(step, tuple):
                weight, bias, _, result = step
                row = result[r]
                np.dot(weight[r], h, out=row)
                if bias is not None:
                    np.add(row, bias[r], out=row)
                h = row
            else:
                h = step(h)


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


def make_batched_policy(net: nn.Module, slots: int, *, kind: str = "auto") -> BatchedPolicy:
    """Choose the fastest exact batched implementation for ``net``.

    Args:
        net: The network template (its parameters are not used).
        slots: How many solutions are evaluated side by side.
        kind: ``"auto"``, ``"numpy"`` (fails for unsupported nets) or ``"module"``.

    Returns:
        A batched policy.
    """
    if kind not in ("auto", "numpy", "module"):
        raise ValueError(f"policy kind must be 'auto', 'numpy' or 'module'; got {kind!r}.")
    on_cpu = all(p.device.type == "cpu" for p in net.parameters())
    plan = NumpyMLP.plan_for(net) if kind != "module" and on_cpu else None
    if plan is not None:
        return NumpyMLP(plan, slots)
    if kind == "numpy":
        raise ValueError(
            f"The numpy fast path handles Linear/activation stacks on the CPU; this network is not one:\n{net}"
        )
    return ModuleLoop(net, slots)
