"""NEProblem: evolve the parameters of a PyTorch network (EvoTorch's ``NEProblem``)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from hpcne.core import ObjectiveSense, Problem, Solution
from hpcne.neuroevolution.net import check_net_string, reset_module_state, str_to_net
from hpcne.tools import as_numpy

__all__ = ["NEProblem", "NetworkSpec"]

NetworkSpec = str | nn.Module | type | Callable[..., nn.Module]


def _property_value(value: Any) -> dict[str, Any]:
    """The dict of a constants property, also when a subclass wrote it as a plain method."""
    return dict(value() if callable(value) else value)


class NEProblem(Problem):
    """A problem whose solutions are the flattened parameters of a network.

    Subclass it and override :meth:`_evaluate_network`, or pass ``network_eval_func``.
    """

    def __init__(
        self,
        objective_sense: ObjectiveSense,
        network: NetworkSpec,
        network_eval_func: Callable[[nn.Module], Any] | None = None,
        *,
        network_args: Mapping[str, Any] | None = None,
        initial_bounds: tuple[Any, Any] | None = (-1e-5, 1e-5),
        eval_dtype: torch.dtype | None = None,
        eval_data_length: int | None = None,
        seed: int | None = None,
        num_actors: int | str | None = None,
        actor_config: dict | None = None,
        num_gpus_per_actor: float | str | None = None,
        num_subbatches: int | None = None,
        subbatch_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Create the problem and instantiate the network once to learn its parameter count.

        Args:
            objective_sense: ``"min"`` or ``"max"``.
            network: A network string (``"Linear(3, 32) >> Tanh() >> Linear(32, 1)"``), an
                ``nn.Module`` instance, an ``nn.Module`` class, or a function returning a module.
                Classes and functions receive ``network_args`` and those of
                ``_network_constants`` that their signature names.
            network_eval_func: Maps a parameterized network to its fitness (instead of
                overriding :meth:`_evaluate_network`).
            network_args: Extra keyword arguments (or string constants) for the network.
            initial_bounds: Interval for the initial parameters.
            eval_dtype: Dtype of the evaluations.
            eval_data_length: Extra evaluation columns per solution (see :class:`hpcne.core.Problem`).
            seed: Run seed (see :class:`hpcne.core.Problem`).
            num_actors: Parallel workers (see :class:`hpcne.core.Problem`).
            actor_config: Per-worker options.
            num_gpus_per_actor: GPU share per worker.
            num_subbatches: Dynamic split into this many pieces.
            subbatch_size: Dynamic split into pieces of this size.
            device: Device of the problem's tensors (and default device of the network).
        """
        if isinstance(network, str):
            check_net_string(network)  # refuse a bad string now; it is built on first use (see `network`)
        if network_eval_func is not None and not callable(network_eval_func):
            raise TypeError(f"network_eval_func must be callable; got {type(network_eval_func).__name__}.")
        if network_args is not None and not isinstance(network_args, Mapping):
            raise TypeError(f"network_args must be a dict; got {type(network_args).__name__}.")
        self._original_network = network
        self._network_args = dict(network_args or {})
        self._network_eval_func = network_eval_func
        self._device_arg = torch.device("cpu" if device is None else device)
        self._network_template: nn.Module | None = None  # built on first use: see `network`
        super().__init__(
            objective_sense,
            initial_bounds=initial_bounds,
            dtype=torch.float32,
            eval_dtype=eval_dtype,
            eval_data_length=eval_data_length,
            device=device,
            seed=seed,
            num_actors=num_actors,
            actor_config=actor_config,
            num_gpus_per_actor=num_gpus_per_actor,
            num_subbatches=num_subbatches,
            subbatch_size=subbatch_size,
        )

    # ---------------------------------------------------------------- networks
    @property
    def _network_constants(self) -> dict[str, Any]:
        """Constants offered to network strings and to network classes/functions by name."""
        return {}

    @property
    def _str_network_constants(self) -> dict[str, Any]:
        """Constants offered to network strings only, overriding :attr:`_network_constants` there."""
        return {}

    def _constants(self, *, for_string: bool = False) -> dict[str, Any]:
        """``_network_constants`` (plus the string-only ones) and ``network_args``, the latter winning."""
        constants = _property_value(self._network_constants)
        if for_string:
            constants = {**constants, **_property_value(self._str_network_constants)}
        return {**constants, **self._network_args}

    @property
    def network_device(self) -> torch.device:
        """The device on which networks are placed (the worker's mapped device under MPI)."""
        return self._device_arg

    def _instantiate_net(self, network: NetworkSpec) -> nn.Module:
        """Build a module from any accepted network form, on :attr:`network_device`."""
        constants = self._constants(for_string=isinstance(network, str))
        if isinstance(network, str):
            net = str_to_net(network, **constants)
        elif isinstance(network, nn.Module):
            net = copy.deepcopy(network)
        elif callable(network):
            net = network(**self._arguments_for(network, constants))
            if not isinstance(net, nn.Module):
                raise TypeError(
                    f"The network function {getattr(network, '__name__', network)!r} returned a "
                    f"{type(net).__name__}; it must return a torch.nn.Module."
                )
        else:
            raise TypeError(
                "network must be a network string, an nn.Module instance, an nn.Module class, or a "
                f"function returning a module; got {type(network).__name__}."
            )
        net = net.to(self.network_device)
        if not any(True for _ in net.parameters()):
            raise ValueError(f"The network has no parameters to evolve:\n{net}")
        for p in net.parameters():
            p.requires_grad_(False)
        return net.eval()

    def _arguments_for(self, fn: Callable[..., nn.Module], constants: dict[str, Any]) -> dict[str, Any]:
        """``network_args`` plus the constants that ``fn``'s signature names."""
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return dict(self._network_args)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return constants
        named = {k: v for k, v in constants.items() if k in params}
        return {**named, **self._network_args}

    def _use_device(self, device: torch.device) -> None:
        """Place the networks on the device the runtime chose (unless ``network_device`` is overridden)."""
        if device != self._device_arg:
            self._device_arg = device
            if self._network_template is not None:
                self._network_template = self._network_template.to(self.network_device)

    @property
    def network(self) -> nn.Module:
        """The network template (its parameters are overwritten by :meth:`parameterize_net`).

        It is built on first use, so that a subclass may set the attributes its
        ``_network_constants`` reads after calling ``super().__init__``.
        """
        if self._network_template is None:
            self._network_template = self._instantiate_net(self._original_network)
        return self._network_template

    @property
    def solution_length(self) -> int:
        """The number of network parameters."""
        return sum(p.numel() for p in self.network.parameters())

    def parameterize_net(self, x: Any) -> nn.Module:
        """Load ``x`` into the problem's network and return it (the same object each time).

        Recurrent layers start from a zero state, so no state carries over between solutions.

        Args:
            x: The parameters: a tensor, an array, a sequence of numbers or a :class:`Solution`.
        """
        if isinstance(x, Solution):
            x = x.values
        vec = torch.as_tensor(as_numpy(x, self.wire_dtype).reshape(-1)).to(self.network_device)
        if vec.numel() != self.solution_length:
            raise ValueError(
                f"The network has {self.solution_length} parameters but {vec.numel()} values were given; "
                "pass one solution of this problem (a vector of length solution_length)."
            )
        net = self.network
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vec, net.parameters())
        reset_module_state(net)
        return net

    def make_net(self, x: Any) -> nn.Module:
        """Return a new network holding the parameters ``x``."""
        return copy.deepcopy(self.parameterize_net(x))

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, solution: Solution) -> None:
        solution.set_evaluation(float(self._evaluate_network(self.parameterize_net(solution.values))))

    def _evaluate_network(self, network: nn.Module) -> float | torch.Tensor:
        """Return the fitness of a parameterized network; override this or pass network_eval_func."""
        if self._network_eval_func is None:
            raise NotImplementedError(
                f"{type(self).__name__} needs a fitness: pass network_eval_func or override _evaluate_network."
            )
        return self._network_eval_func(network)
