"""Tests of lossless state trees in HDF5."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from hpcne.io import read_attrs, read_tree, tree_digest, write_attrs, write_tree


def _sample_tree() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(7)
    return {
        "tensors": {
            "weights": torch.tensor([[1.5, float("nan")], [float("-inf"), -0.0]], dtype=torch.float32),
            "scalar": torch.tensor(3.25, dtype=torch.float64),
            "empty": torch.zeros((0, 3), dtype=torch.int64),
            "rng": generator.get_state(),
            "mask": torch.tensor([True, False]),
            "half": torch.tensor([1.0, -2.5], dtype=torch.bfloat16),
            "column": torch.arange(6.0).reshape(2, 3).t(),
        },
        "arrays": {
            "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
            "bools": np.array([True, False, True]),
            "empty": np.zeros((0,), dtype=np.int16),
            "big_endian": np.arange(3, dtype=">f8"),
            "zero_d": np.array(5, dtype=np.uint32),
        },
        "np_scalars": [np.float32(0.1), np.int64(-3), np.bool_(True)],
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**127 + 12345, -(2**100)],
        "floats": (float("nan"), float("inf"), -0.0, 1e-310),
        "flags": [True, False],
        "texts": ["héllo ✓", "", "nul\0inside"],
        "nothing": None,
        "mixed": [1, "two", 3.0, None, [torch.ones(1)], {"k": (4,)}],
        "a.b": 1,
        "..": 2,
        " spaced key ": 3,
        "ünïcode": 4,
    }


def _assert_identical(expected: Any, actual: Any) -> None:
    assert type(actual) is type(expected)
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            _assert_identical(expected[key], actual[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for expected_item, actual_item in zip(expected, actual):
            _assert_identical(expected_item, actual_item)
    elif isinstance(expected, torch.Tensor):
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape)
        assert torch.equal(actual.reshape(-1).view(torch.uint8), expected.reshape(-1).view(torch.uint8))
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape)
        assert actual.tobytes() == expected.tobytes()
    elif isinstance(expected, float):
        assert struct.pack("<d", actual) == struct.pack("<d", expected)
    else:
        assert actual == expected


def _round_trip(tree: dict[str, Any], path: Path) -> dict[str, Any]:
    with h5py.File(path, "w") as file:
        write_tree(file.create_group("tree", track_order=True), tree)
    with h5py.File(path, "r") as file:
        return read_tree(file["tree"])


def test_round_trip_is_exact(tmp_path: Path) -> None:
    tree = _sample_tree()
    restored = _round_trip(tree, tmp_path / "tree.h5")
    _assert_identical(tree, restored)
    assert tree_digest(restored) == tree_digest(tree)


def test_random_generator_states_survive(tmp_path: Path) -> None:
    torch_generator = torch.Generator().manual_seed(3)
    numpy_generator = np.random.default_rng(np.random.SeedSequence())  # 128-bit entropy and PCG64 state
    tree = {"torch": torch_generator.get_state(), "numpy": numpy_generator.bit_generator.state}
    restored = _round_trip(tree, tmp_path / "rng.h5")
    torch_copy, numpy_copy = torch.Generator(), np.random.default_rng()
    torch_copy.set_state(restored["torch"])
    numpy_copy.bit_generator.state = restored["numpy"]
    assert torch.equal(torch.rand(5, generator=torch_copy), torch.rand(5, generator=torch_generator))
    assert np.array_equal(numpy_copy.random(5), numpy_generator.random(5))


def test_digest_ignores_key_order_but_not_values() -> None:
    tree = {"a": torch.zeros(3), "b": [1, 2.0]}
    assert tree_digest({"b": [1, 2.0], "a": torch.zeros(3)}) == tree_digest(tree)
    for changed in (
        {"a": torch.zeros(3, dtype=torch.float64), "b": [1, 2.0]},
        {"a": torch.zeros(1, 3), "b": [1, 2.0]},
        {"a": torch.tensor([0.0, 0.0, -0.0]), "b": [1, 2.0]},
        {"a": torch.zeros(3), "b": (1, 2.0)},
        {"a": torch.zeros(3), "b": [1.0, 2.0]},
        {"a": torch.zeros(3).numpy(), "b": [1, 2.0]},
    ):
        assert tree_digest(changed) != tree_digest(tree)


@pytest.mark.parametrize(("key", "error"), [("a/b", ValueError), ("", ValueError), (".", ValueError), (3, TypeError)])
def test_rejects_keys_that_are_not_hdf5_names(tmp_path: Path, key: Any, error: type[Exception]) -> None:
    with h5py.File(tmp_path / "keys.h5", "w") as file, pytest.raises(error, match="outer"):
        write_tree(file, {"outer": {key: 1}})


@pytest.mark.parametrize("value", [{1, 2}, np.array(["text"]), np.array([None], dtype=object), b"bytes"])
def test_rejects_unsupported_values_naming_path_and_type(tmp_path: Path, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"{type(value).__name__} at 'outer/list/1'"):
        tree_digest({"outer": {"list": [0, value]}})
    with h5py.File(tmp_path / "values.h5", "w") as file, pytest.raises(TypeError, match="outer/list/1"):
        write_tree(file, {"outer": {"list": [0, value]}})


def test_read_rejects_foreign_groups(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "foreign.h5", "w") as file:
        file.create_dataset("data/x", data=[1, 2])
        with pytest.raises(ValueError, match="'kind' attribute"):
            read_tree(file["data"])


def test_attributes_round_trip_as_plain_python_values(tmp_path: Path) -> None:
    attrs = {"config": '{"env": "Ant-v5", "note": "héllo ✓"}', "empty": "", "seed": 3, "sigma": 0.5, "flag": True}
    with h5py.File(tmp_path / "attrs.h5", "w") as file:
        write_attrs(file, attrs)
    with h5py.File(tmp_path / "attrs.h5", "r") as file:
        restored = read_attrs(file)
    assert restored == attrs
    assert all(type(restored[name]) is type(value) for name, value in attrs.items())
