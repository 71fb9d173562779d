"""Gradient-ascent optimizers for the centre of a search distribution: ClipUp, Adam, SGD and any torch.optim."""

from __future__ import annotations

from typing import Any

import torch

from hpcne.algorithms.base import check_positive
from hpcne.tools.dtypes import DType, to_torch_dtype

__all__ = ["SGD", "Adam", "CenterOptimizer", "ClipUp", "TorchOptimizer", "get_optimizer_class", "make_optimizer"]


def _check_fraction(name: str, value: float) -> float:
    """Return ``value`` as a float after checking that it lies in ``[0, 1)``."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}. Use 0 to disable it.")
    return value


class CenterOptimizer:
    """Base class: turns an estimated gradient into the step to add to the centre (ascent).

    Subclasses keep their moments in ``self.state`` (a dict of tensors and ints) and implement
    :meth:`_ascent`.
    """

    def __init__(
        self,
        solution_length: int,
        *,
        stepsize: float,
        dtype: DType = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Create the optimizer.

        Args:
            solution_length: Length of the gradient vectors.
            stepsize: The learning rate (positive).
            dtype: Dtype of the gradients and moments.
            device: Device of the gradients and moments.
        """
        self.solution_length = int(solution_length)
        self.stepsize = check_positive("stepsize", stepsize)
        self.dtype = to_torch_dtype(dtype)
        self.device = torch.device(device)
        self.state: dict[str, Any] = {}

    def _zeros(self) -> torch.Tensor:
        return torch.zeros(self.solution_length, dtype=self.dtype, device=self.device)

    def ascent(self, gradient: torch.Tensor) -> torch.Tensor:
        """Return the step to add to the centre for the estimated ``gradient`` (to be ascended).

        Args:
            gradient: The gradient estimate, shape ``(solution_length,)``.

        Returns:
            A new tensor: the step.
        """
        g = torch.as_tensor(gradient, dtype=self.dtype, device=self.device)
        if g.shape != (self.solution_length,):
            raise ValueError(
                f"{type(self).__name__}.ascent expected a gradient of shape ({self.solution_length},); "
                f"got {tuple(g.shape)}."
            )
        return self._ascent(g)

    def _ascent(self, gradient: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Return a copy of the moments (tensors and ints)."""
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore moments returned by :meth:`state_dict`."""
        if set(state) != set(self.state):
            raise ValueError(
                f"{type(self).__name__} state must have the keys {sorted(self.state)}; got {sorted(state)}. "
                "Was it saved with a different optimizer?"
            )
        self.state = {
            k: torch.as_tensor(v, dtype=self.state[k].dtype, device=self.device).clone()
            if isinstance(self.state[k], torch.Tensor)
            else v
            for k, v in state.items()
        }


class ClipUp(CenterOptimizer):
    """ClipUp (Toklu et al., PPSN 2020): momentum on normalised gradients with a speed limit.

    ``v <- clip(momentum * v + stepsize * g / |g|, max_speed)`` (clipping the norm); the step is ``v``.
    """

    def __init__(
        self,
        solution_length: int,
        *,
        stepsize: float,
        momentum: float = 0.9,
        max_speed: float | None = None,
        dtype: DType = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Create ClipUp.

        Args:
            solution_length: Length of the gradient vectors.
            stepsize: Length of the normalised gradient added to the velocity each step.
            momentum: Velocity decay in ``[0, 1)``.
            max_speed: Largest velocity norm; twice ``stepsize`` when None.
            dtype: Dtype of the gradients and the velocity.
            device: Device of the gradients and the velocity.
        """
        super().__init__(solution_length, stepsize=stepsize, dtype=dtype, device=device)
        self.momentum = _check_fraction("momentum", momentum)
        self.max_speed = 2.0 * self.stepsize if max_speed is None else float(max_speed)
        if self.max_speed < 0:
            raise ValueError(f"max_speed must be non-negative (or None for 2 x stepsize); got {max_speed!r}.")
        self.state = {"velocity": self._zeros()}

    def _ascent(self, gradient: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(gradient)
        unit = gradient / norm if norm > 0 else torch.zeros_like(gradient)
        velocity = self.momentum * self.state["velocity"] + self.stepsize * unit
        speed = torch.linalg.vector_norm(velocity)
        if speed > self.max_speed:
            velocity = velocity * (self.max_speed / speed)
        self.state["velocity"] = velocity
        return velocity.clone()


class Adam(CenterOptimizer):
    """Adam (Kingma & Ba, ICLR 2015), as ``torch.optim.Adam`` but ascending the gradient."""

    def __init__(
        self,
        solution_length: int,
        *,
        stepsize: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        epsilon: float | None = None,
        amsgrad: bool | None = None,
        dtype: DType = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Create Adam.

        None means torch's default, as in EvoTorch: ``stepsize`` 0.001, ``beta1`` 0.9, ``beta2``
        0.999, ``epsilon`` 1e-8, ``amsgrad`` False.

        Args:
            solution_length: Length of the gradient vectors.
            stepsize: The learning rate.
            beta1: Decay of the first moment, in ``[0, 1)``; give it together with ``beta2``.
            beta2: Decay of the second moment, in ``[0, 1)``.
            epsilon: Added to the denominator (positive).
            amsgrad: Use the largest second moment seen so far (Reddi et al., ICLR 2018).
            dtype: Dtype of the gradients and moments.
            device: Device of the gradients and moments.
        """
        if (beta1 is None) != (beta2 is None):
            raise ValueError(
                f"Adam needs beta1 and beta2 both given or both None (for 0.9 and 0.999); got beta1={beta1!r}, "
                f"beta2={beta2!r}."
            )
        stepsize = 0.001 if stepsize is None else stepsize
        super().__init__(solution_length, stepsize=stepsize, dtype=dtype, device=device)
        self.beta1 = _check_fraction("beta1", 0.9 if beta1 is None else beta1)
        self.beta2 = _check_fraction("beta2", 0.999 if beta2 is None else beta2)
        self.epsilon = check_positive("epsilon", 1e-8 if epsilon is None else epsilon)
        self.amsgrad = bool(amsgrad)
        self.state = {"m": self._zeros(), "v": self._zeros(), "t": 0}
        if self.amsgrad:
            self.state["v_max"] = self._zeros()

    def _ascent(self, gradient: torch.Tensor) -> torch.Tensor:
        t = self.state["t"] + 1
        m = self.beta1 * self.state["m"] + (1 - self.beta1) * gradient
        v = self.beta2 * self.state["v"] + (1 - self.beta2) * gradient**2
        self.state.update(m=m, v=v, t=t)
        if self.amsgrad:
            v = self.state["v_max"] = torch.maximum(self.state["v_max"], v)
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return self.stepsize * m_hat / (torch.sqrt(v_hat) + self.epsilon)


class SGD(CenterOptimizer):
    """Gradient ascent with heavy-ball momentum (Polyak 1964): ``v <- momentum * v + g``, step ``lr * v``."""

    def __init__(
        self,
        solution_length: int,
        *,
        stepsize: float,
        momentum: float = 0.0,
        dtype: DType = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Create SGD.

        Args:
            solution_length: Length of the gradient vectors.
            stepsize: The learning rate.
            momentum: Velocity decay in ``[0, 1)``; 0 for plain gradient ascent.
            dtype: Dtype of the gradients and the velocity.
            device: Device of the gradients and the velocity.
        """
        super().__init__(solution_length, stepsize=stepsize, dtype=dtype, device=device)
        self.momentum = _check_fraction("momentum", momentum)
        self.state = {"velocity": self._zeros()}

    def _ascent(self, gradient: torch.Tensor) -> torch.Tensor:
        self.state["velocity"] = self.momentum * self.state["velocity"] + gradient
        return self.stepsize * self.state["velocity"]


class TorchOptimizer(CenterOptimizer):
    """Any ``torch.optim`` optimizer turned to ascent, e.g. ``TorchOptimizer("Adagrad", config={"lr": 0.1}, ...)``.

    Each step hands the optimizer the negated gradient of a zero vector and returns the move it
    makes, which ascends the gradient. Its state (e.g. Adagrad's sums) is the ``state`` of the
    optimizer's one parameter, so it is saved in checkpoints; the hyperparameters come from
    ``config`` when it is rebuilt.
    """

    def __init__(
        self,
        torch_optimizer: type[torch.optim.Optimizer] | str,
        *,
        config: dict[str, Any],
        solution_length: int,
        dtype: DType = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        """Create the optimizer.

        Args:
            torch_optimizer: A ``torch.optim`` optimizer class, or its name (``"Adagrad"``).
            config: Its keyword arguments, e.g. ``{"lr": 0.1}``.
            solution_length: Length of the gradient vectors.
            dtype: Dtype of the gradients.
            device: Device of the gradients.
        """
        if isinstance(torch_optimizer, str):
            found = getattr(torch.optim, torch_optimizer, None)
            if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
                raise ValueError(f"torch.optim has no optimizer class {torch_optimizer!r} (e.g. 'Adagrad', 'RMSprop').")
            torch_optimizer = found
        self.solution_length = int(solution_length)
        self.dtype = to_torch_dtype(dtype)
        self.device = torch.device(device)
        self._data = torch.zeros(self.solution_length, dtype=self.dtype, device=self.device)
        self._optim = torch_optimizer([self._data], **config)
        self.stepsize = float(self._optim.param_groups[0].get("lr", 0.0))
        self.state = {}

    @property
    def contained_optimizer(self) -> torch.optim.Optimizer:
        """The wrapped torch optimizer."""
        return self._optim

    @torch.no_grad()
    def _ascent(self, gradient: torch.Tensor) -> torch.Tensor:
        self._data.zero_()
        self._data.grad = -gradient  # torch optimizers descend
        self._optim.step()
        return self._data.clone()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's per-parameter state (tensors and numbers)."""
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self._optim.state[self._data].items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        self._optim.state[self._data] = {
            k: torch.as_tensor(v).clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()
        }


_OPTIMIZERS: dict[str, type[CenterOptimizer]] = {
    "clipup": ClipUp,
    "clipsgd": ClipUp,
    "clipsga": ClipUp,
    "adam": Adam,
    "sgd": SGD,
    "sga": SGD,
}


def _optimizer_class(name: str) -> type[CenterOptimizer]:
    key = name.lower()
    if key not in _OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of 'clipup', 'adam', 'sgd' or a class.")
    return _OPTIMIZERS[key]


def get_optimizer_class(s: str, optimizer_config: dict[str, Any] | None = None) -> Any:
    """EvoTorch's lookup: the optimizer class called ``s``, or a factory that applies ``optimizer_config``.

    Raises:
        ValueError: For an unknown name.
    """
    cls = _optimizer_class(s)
    if optimizer_config is None:
        return cls

    def factory(*args: Any, **kwargs: Any) -> CenterOptimizer:
        return cls(*args, **{**optimizer_config, **kwargs})

    return factory


def make_optimizer(
    optimizer: str | type[CenterOptimizer] | CenterOptimizer,
    solution_length: int,
    stepsize: float,
    config: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> CenterOptimizer:
    """Build a centre optimizer from a name, a class or a ready instance.

    Args:
        optimizer: ``"clipup"``, ``"adam"`` or ``"sgd"`` (any case; EvoTorch's aliases
            ``"clipsgd"``, ``"clipsga"``, ``"sga"`` too), a :class:`CenterOptimizer` subclass,
            a ``torch.optim`` optimizer class (wrapped in :class:`TorchOptimizer`, ``lr`` =
            ``stepsize``), or an instance (used as is).
        solution_length: Length of the gradient vectors.
        stepsize: The learning rate, unless ``config`` sets ``stepsize`` itself.
        config: Further keyword arguments for the optimizer, e.g. ``{"max_speed": 0.3}``.
        dtype: Dtype of the gradients.
        device: Device of the gradients.

    Returns:
        The optimizer.

    Raises:
        ValueError: For an unknown name, or a ``config`` given with a ready instance.
    """
    if isinstance(optimizer, CenterOptimizer):
        if config:
            raise ValueError(
                "optimizer_config cannot be applied to an optimizer instance; "
                "pass the optimizer's name or class instead, or configure the instance yourself."
            )
        return optimizer
    if isinstance(optimizer, str):
        cls = _optimizer_class(optimizer)
    elif isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        config = {"lr": stepsize, **(config or {})}
        return TorchOptimizer(optimizer, config=config, solution_length=solution_length, dtype=dtype, device=device)
    elif isinstance(optimizer, type) and issubclass(optimizer, CenterOptimizer):
        cls = optimizer
    else:
        raise ValueError(
            f"optimizer must be a name ('clipup', 'adam', 'sgd'), a CenterOptimizer class or instance; "
            f"got {optimizer!r}."
        )
    options = {"stepsize": stepsize, **(config or {})}
    return cls(solution_length, dtype=dtype, device=device, **options)
