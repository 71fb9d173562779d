"""Tests of atomic, checksummed checkpoints and their fallback."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from hpcne.io import FORMAT_VERSION, CheckpointError, CheckpointManager, CheckpointWarning, tree_digest


def _state(generation: int) -> dict[str, Any]:
    return {
        "center": torch.full((64,), float(generation)),
        "optimizer": {"step": generation, "momentum": np.arange(4.0) * generation},
        "rng": torch.Generator().manual_seed(generation).get_state(),
        "entropy": 2**127 + generation,
        "name": "pgpe",
    }


def _save_generations(manager: CheckpointManager, generations: range) -> None:
    for generation in generations:
        manager.save(generation, _state(generation))


def _corrupt_dataset(path: Path, dataset: str) -> None:
    """Flips the bytes of a dataset's stored data in place."""
    with h5py.File(path, "r") as file:
        offset, size = file[dataset].id.get_offset(), file[dataset].id.get_storage_size()
    with path.open("r+b") as stream:
        stream.seek(offset)
        data = stream.read(size)
        stream.seek(offset)
        stream.write(bytes(byte ^ 0xFF for byte in data))


def test_round_trip(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt")
    config = json.dumps({"popsize": 10})
    path = manager.save(12, _state(12), attrs={"config": config, "seed": 3, "sigma": 0.5})
    checkpoint = manager.load_latest()
    assert checkpoint is not None
    assert (checkpoint.path, checkpoint.generation) == (path, 12)
    assert path.name == "ckpt-00000012.h5"
    assert tree_digest(checkpoint.state) == tree_digest(_state(12))
    assert checkpoint.state["entropy"] == 2**127 + 12
    assert checkpoint.attrs["config"] == config
    assert (checkpoint.attrs["seed"], checkpoint.attrs["sigma"]) == (3, 0.5)
    assert checkpoint.attrs["format_version"] == FORMAT_VERSION
    assert "created" in checkpoint.attrs


def test_keeps_only_the_newest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    _save_generations(manager, range(1, 6))
    assert [path.name for path in manager.list()] == ["ckpt-00000004.h5", "ckpt-00000005.h5"]


def test_saving_a_generation_again_replaces_it(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(4, _state(4))
    manager.save(4, _state(5))
    assert len(manager.list()) == 1
    assert manager.load(manager.list()[0]).state["optimizer"]["step"] == 5


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert CheckpointManager(tmp_path / "missing").load_latest() is None


def test_truncated_newest_falls_back_with_warning(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    _save_generations(manager, range(1, 4))
    newest = manager.list()[-1]
    os.truncate(newest, newest.stat().st_size // 2)
    with pytest.warns(CheckpointWarning, match=r"ckpt-00000003\.h5 is unusable .*falling back to ckpt-00000002\.h5"):
        checkpoint = manager.load_latest()
    assert checkpoint is not None and checkpoint.generation == 2


def test_flipped_data_fails_the_checksum(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    _save_generations(manager, range(1, 3))
    _corrupt_dataset(manager.list()[-1], "state/center")
    with pytest.warns(CheckpointWarning, match=r"ckpt-00000002\.h5 is unusable \(checksum mismatch\)"):
        checkpoint = manager.load_latest()
    assert checkpoint is not None and checkpoint.generation == 1
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        manager.load(manager.list()[-1])


def test_newer_format_is_skipped(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    _save_generations(manager, range(1, 3))
    with h5py.File(manager.list()[-1], "r+") as file:
        file.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.warns(CheckpointWarning, match="newer than the supported version"):
        checkpoint = manager.load_latest()
    assert checkpoint is not None and checkpoint.generation == 1


def test_all_corrupt_raises_listing_every_file(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    _save_generations(manager, range(1, 4))
    paths = manager.list()
    os.truncate(paths[2], 100)
    _corrupt_dataset(paths[1], "state/optimizer/momentum")
    with h5py.File(paths[0], "r+") as file:
        del file.attrs["checksum"]
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError) as error:
        manager.load_latest()
    assert set(error.value.problems) == set(paths)
    message = str(error.value)
    assert all(path.name in message for path in paths)
    assert "checksum mismatch" in message and "checksum" in error.value.problems[paths[0]]


def test_leftover_temporary_file_is_ignored_and_cleaned(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, _state(1))
    leftover = tmp_path / ".ckpt-crashed.h5.tmp"
    leftover.write_bytes(b"partial")
    assert manager.list() == [tmp_path / "ckpt-00000001.h5"]
    checkpoint = manager.load_latest()
    assert checkpoint is not None and checkpoint.generation == 1
    manager.save(2, _state(2))
    assert not leftover.exists()


def test_rejects_reserved_attributes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        CheckpointManager(tmp_path).save(1, _state(1), attrs={"generation": 2})
    assert not list(tmp_path.iterdir())


def test_file_holds_only_fixed_size_numbers_and_strings(tmp_path: Path) -> None:
    state = {**_state(1), "mixed": [1, "a", None, (2.5, True)]}
    path = CheckpointManager(tmp_path).save(1, state, attrs={"config": json.dumps({"env": "Ant-v5"})})
    allowed = {h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.ENUM, h5py.h5t.STRING}
    types: list[h5py.h5t.TypeID] = []

    def collect(_: str, node: h5py.HLObject) -> None:
        types.extend(node.attrs.get_id(name).get_type() for name in node.attrs)
        if isinstance(node, h5py.Dataset):
            types.append(node.id.get_type())

    with h5py.File(path, "r") as file:
        collect("/", file)
        file.visititems(collect)
    assert {type_.get_class() for type_ in types} <= allowed
    assert not any(type_.is_variable_str() for type_ in types if isinstance(type_, h5py.h5t.TypeStringID))


# ---------------------------------------------------------------------------- damaged and crafted files
def _newest_is_refused(manager: CheckpointManager, reason: str) -> None:
    """The newest checkpoint is refused for ``reason`` and the previous one is loaded instead."""
    with pytest.warns(CheckpointWarning, match=rf"ckpt-00000002\.h5 is unusable \({reason}.*falling back"):
        checkpoint = manager.load_latest()
    assert checkpoint is not None and checkpoint.generation == 1


def test_any_flipped_bit_is_a_fallback_never_a_crash(tmp_path: Path) -> None:
    """Once ~10% of positions gave a raw h5py RuntimeError that blocked resume, train and evaluate."""
    manager = CheckpointManager(tmp_path)
    # Many small groups, as a searcher's state has: flips in their B-trees made h5py raise RuntimeError.
    state = {f"part{i}": {"values": torch.full((8,), float(i)), "step": i, "items": [1, 2.0, "x"]} for i in range(12)}
    for generation in (1, 2):
        manager.save(generation, state)
    newest = manager.list()[-1]
    pristine = newest.read_bytes()
    for position in range(0, len(pristine), len(pristine) // 80):
        damaged = bytearray(pristine)
        damaged[position] ^= 1 << (position % 8)
        newest.write_bytes(damaged)
        with warnings.catch_warnings(record=True):  # a fallback warns; a flip in unused bytes does not
            warnings.simplefilter("always")
            checkpoint = manager.load_latest()
        assert checkpoint is not None and checkpoint.generation in (1, 2), position
        if checkpoint.generation == 2:  # loaded despite the flip: then it is exactly what was saved
            assert tree_digest(checkpoint.state) == tree_digest(state), position


def test_a_changed_config_attribute_fails_the_checksum(tmp_path: Path) -> None:
    """The config names the environment to import: it must not change unnoticed."""
    manager = CheckpointManager(tmp_path)
    for generation in (1, 2):
        manager.save(generation, _state(generation), {"config": json.dumps({"env": "CartPole-v1"})})
    with h5py.File(manager.list()[-1], "r+") as file:
        file.attrs["config"] = json.dumps({"env": "this:Nope-v0"})
    _newest_is_refused(manager, "checksum mismatch")


@pytest.mark.parametrize("craft", ["external", "virtual", "unwritten", "soft_link", "deep"])
def test_crafted_datasets_are_refused_before_anything_is_read(tmp_path: Path, craft: str) -> None:
    """External storage (a local file leaked into the state), a virtual dataset, a 1.5e9-row dataset never
    written (11.7 GB allocated for 45 s), a link, 3000 nested groups (RecursionError): all refused."""
    manager = CheckpointManager(tmp_path)
    _save_generations(manager, range(1, 3))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"do not read" * 100)
    with h5py.File(manager.list()[-1], "r+") as file:
        state = file["state"]
        del state["center"]
        if craft == "external":
            made = state.create_dataset("center", shape=(100,), dtype="u1", external=[(str(secret), 0, 1100)])
        elif craft == "virtual":
            layout = h5py.VirtualLayout(shape=(100,), dtype="u1")
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=(100,))
            made = state.create_virtual_dataset("center", layout)
        elif craft == "unwritten":
            made = state.create_dataset("center", shape=(1_500_000_000,), dtype="f8", chunks=(1024,))
        elif craft == "soft_link":
            state["center"] = h5py.SoftLink("/state/name")
            made = None
        else:
            group = state.create_group("center")
            for _ in range(3000):
                group.attrs["kind"] = "dict"
                group = group.create_group("x")
            made = None
        if made is not None:
            made.attrs["kind"] = "tensor"
            made.attrs["torch_dtype"] = "float32"
    reason = {
        "external": "'/state/center' keeps its data outside the file",
        "virtual": "'/state/center' keeps its data outside the file",
        "unwritten": r"'/state/center' declares 12000000000 bytes of data but the file holds 0",
        "soft_link": "/state/center is a SoftLink",
        "deep": "'/state/center(/x)+' is nested deeper than 64 levels",
    }[craft]
    _newest_is_refused(manager, reason)
