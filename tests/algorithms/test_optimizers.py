"""ClipUp, Adam and SGD pinned on hand-computed steps; the factory and its argument checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from hpcne.algorithms.optimizers import SGD, Adam, ClipUp, TorchOptimizer, get_optimizer_class, make_optimizer


def test_clipup_trajectory_with_clipping() -> None:
    clipup = ClipUp(2, stepsize=0.1, momentum=0.9, max_speed=0.15, dtype=torch.float64)
    gradients = [[3.0, 4.0], [0.0, 2.0], [0.0, 0.0], [-1.0, 0.0]]
    expected = [
        [0.06, 0.08],  # 0.1 * (3, 4) / 5
        [0.04493071589424356, 0.14311265062610912],  # (0.054, 0.172) clipped to norm 0.15
        [0.0404376443048192, 0.1288013855634982],  # zero gradient: momentum only
        [-0.06360612012566272, 0.1159212470071484],  # 0.9 v + 0.1 * (-1, 0)
    ]
    for gradient, step in zip(gradients, expected):
        torch.testing.assert_close(clipup.ascent(torch.tensor(gradient)), torch.tensor(step, dtype=torch.float64))


def test_clipup_zero_gradient_gives_zero_step() -> None:
    step = ClipUp(3, stepsize=0.1).ascent(torch.zeros(3))
    assert torch.equal(step, torch.zeros(3))


def test_clipup_default_max_speed_is_twice_the_stepsize() -> None:
    assert ClipUp(3, stepsize=0.25).max_speed == 0.5


def test_adam_two_steps() -> None:
    adam = Adam(2, stepsize=0.1, dtype=torch.float64)
    # First step: bias-corrected m = g and v = g**2, so the step is 0.1 * g / (|g| + 1e-8).
    first = adam.ascent(torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(first, torch.tensor([0.1 / (1 + 1e-8), -0.2 / (2 + 1e-8)], dtype=torch.float64))
    # Second step with g = (-1, 0): m = (-0.01, -0.18) / 0.19, v = (0.001999, 0.003996) / 0.001999.
    second = adam.ascent(torch.tensor([-1.0, 0.0]))
    torch.testing.assert_close(second, torch.tensor([-0.005263157842105226, -0.06700582493973259], dtype=torch.float64))


def test_sgd_with_momentum() -> None:
    sgd = SGD(2, stepsize=0.1, momentum=0.5, dtype=torch.float64)
    torch.testing.assert_close(sgd.ascent(torch.tensor([1.0, -2.0])), torch.tensor([0.1, -0.2], dtype=torch.float64))
    torch.testing.assert_close(sgd.ascent(torch.tensor([1.0, 0.0])), torch.tensor([0.15, -0.1], dtype=torch.float64))


def test_state_dict_round_trip_continues_identically() -> None:
    first = ClipUp(3, stepsize=0.1)
    first.ascent(torch.tensor([1.0, 2.0, 3.0]))
    second = ClipUp(3, stepsize=0.1)
    second.load_state_dict(first.state_dict())
    g = torch.tensor([-1.0, 0.5, 0.0])
    assert torch.equal(first.ascent(g), second.ascent(g))


def test_state_dict_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="Adam state must have the keys"):
        Adam(3, stepsize=0.1).load_state_dict(ClipUp(3, stepsize=0.1).state_dict())


def test_make_optimizer_names_classes_and_config() -> None:
    assert isinstance(make_optimizer("ClipUp", 3, 0.1), ClipUp)
    assert isinstance(make_optimizer("adam", 3, 0.1), Adam)
    assert isinstance(make_optimizer(SGD, 3, 0.1), SGD)
    assert make_optimizer("clipup", 3, 0.1, {"max_speed": 0.3}).max_speed == 0.3
    ready = Adam(3, stepsize=0.1)
    assert make_optimizer(ready, 3, 0.5) is ready


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_optimizer("rmsprop", 3, 0.1), "Unknown optimizer 'rmsprop'; expected one of 'clipup', 'adam'"),
        (lambda: make_optimizer(dict, 3, 0.1), "optimizer must be a name"),
        (lambda: make_optimizer(Adam(3, stepsize=0.1), 3, 0.1, {"beta1": 0.5}), "cannot be applied to an optimizer"),
        (lambda: ClipUp(3, stepsize=0.0), "stepsize must be a positive number"),
        (lambda: SGD(3, stepsize=-0.1), "stepsize must be a positive number"),
        (lambda: ClipUp(3, stepsize=0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
        (lambda: SGD(3, stepsize=0.1, momentum=-0.1), r"momentum must be in \[0, 1\)"),
        (lambda: ClipUp(3, stepsize=0.1, max_speed=-1.0), "max_speed must be non-negative"),
        (lambda: Adam(3, stepsize=0.1, beta1=0.9, beta2=1.0), r"beta2 must be in \[0, 1\)"),
        (lambda: Adam(3, beta2=0.99), "beta1 and beta2 both given or both None"),
        (lambda: ClipUp(3, stepsize=0.1).ascent(torch.zeros(4)), r"expected a gradient of shape \(3,\); got \(4,\)"),
    ],
)
def test_bad_arguments(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_optimizers_are_importable_at_evotorchs_module_path() -> None:
    import hpcne.algorithms.optimizers
    import hpcne.optimizers

    for name in hpcne.optimizers.__all__:
        assert getattr(hpcne.optimizers, name) is getattr(hpcne.algorithms.optimizers, name)


def test_adam_defaults_are_torchs_and_match_torch_adam() -> None:
    adam = Adam(3, dtype="float64", amsgrad=True)
    assert (adam.stepsize, adam.beta1, adam.beta2, adam.epsilon, adam.dtype) == (0.001, 0.9, 0.999, 1e-8, torch.float64)
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([x], amsgrad=True)
    position = torch.zeros(3, dtype=torch.float64)
    for gradient in ([1.0, -2.0, 0.5], [0.1, 3.0, -1.0], [-2.0, 0.0, 0.2]):
        position += adam.ascent(torch.tensor(gradient, dtype=torch.float64))
        x.grad = -torch.tensor(gradient, dtype=torch.float64)  # torch descends
        reference.step()
        torch.testing.assert_close(position, x.detach())


@pytest.mark.parametrize("name", ["Adagrad", torch.optim.RMSprop])
def test_torch_optimizer_ascends_and_saves_its_state(name: str | type) -> None:
    optimizer = TorchOptimizer(name, config={"lr": 0.1}, solution_length=2, dtype="float32")
    assert optimizer.stepsize == 0.1
    first = optimizer.ascent(torch.tensor([1.0, -1.0]))
    assert first[0] > 0 > first[1]  # ascent: along the gradient
    saved = optimizer.state_dict()
    again = optimizer.ascent(torch.tensor([1.0, 1.0]))
    restored = TorchOptimizer(name, config={"lr": 0.1}, solution_length=2)
    restored.load_state_dict(saved)
    torch.testing.assert_close(restored.ascent(torch.tensor([1.0, 1.0])), again)
    with pytest.raises(ValueError, match=r"torch\.optim has no optimizer class 'Adagard'"):
        TorchOptimizer("Adagard", config={}, solution_length=2)


def test_get_optimizer_class_and_torch_classes_in_make_optimizer() -> None:
    assert get_optimizer_class("ClipSGA") is ClipUp
    factory = get_optimizer_class("sgd", optimizer_config={"momentum": 0.5})
    assert factory(4, stepsize=0.1).momentum == 0.5
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        get_optimizer_class("rmsprop")
    wrapped = make_optimizer(torch.optim.Adagrad, 3, 0.05, {"lr_decay": 0.01})
    assert isinstance(wrapped, TorchOptimizer) and wrapped.contained_optimizer.defaults["lr_decay"] == 0.01
    assert wrapped.stepsize == 0.05
