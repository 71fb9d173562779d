"""Tests of atomic, checksummed checkpoints and their fallback."""

from __future__ import annotations

import json
import os
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
