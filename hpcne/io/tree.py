"""Lossless storage of nested state trees (tensors, arrays, Python scalars) in HDF5 groups, without pickle."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from operator import itemgetter
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch

from hpcne.io.validate import check_dataset

__all__ = ["MAX_DEPTH", "read_attrs", "read_tree", "tree_digest", "write_attrs", "write_tree"]

_KIND = "kind"
_TORCH_DTYPE = "torch_dtype"
_INT64 = np.iinfo(np.int64)
_NUMERIC_DTYPE_KINDS = "biufc"
# Tensors whose dtype numpy lacks (bfloat16, float8, complex32) are stored as raw bits of this integer dtype.
_BITS_BY_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

_Container = Mapping[str, Any] | list[Any] | tuple[Any, ...]


class _Leaf(NamedTuple):
    """A non-container value in storable form: an array (None for None) and its type tags."""

    kind: str
    data: np.ndarray | None
    torch_dtype: str = ""


def write_tree(group: h5py.Group, tree: Mapping[str, Any]) -> None:
    """Writes a state tree into an empty HDF5 group.

    Dicts, lists and tuples become subgroups, every other value one dataset; each node records its Python
    type in a ``kind`` attribute. Text (str values, ints beyond int64 as decimal digits) is stored as UTF-8
    bytes in uint8 datasets, so the file holds no variable-length data. Key order is kept for nested dicts;
    for the top level it is kept when ``group`` was created with ``track_order=True``.

    Args:
        group: Empty group to write into.
        tree: Mapping with str keys whose values are tensors, numeric numpy arrays or scalars, int (any size),
            float, bool, str, None, or (nested) dicts, lists and tuples of these.

    Raises:
        TypeError: A value or key has an unsupported type (the message names its path).
        ValueError: A key is empty, ``"."``, or contains ``"/"`` or a NUL character.
    """
    _write_container(group, _require_mapping(tree), "")


def read_tree(group: h5py.Group) -> dict[str, Any]:
    """Reads a tree written by `write_tree`.

    Values come back with their original Python types, dtypes and shapes; tuples come back as tuples.

    Args:
        group: Group passed to `write_tree`.

    Returns:
        The tree as nested dicts, lists and tuples.

    Raises:
        ValueError: The group was not written by `write_tree`: an unknown node, a link, data stored
            outside the file or filtered, a dataset that declares more data than the file holds, or
            nesting deeper than `MAX_DEPTH`. Nothing is read from such a dataset.
    """
    tree = _read_node(group)
    if not isinstance(tree, dict):
        raise ValueError(
            f"Expected group {group.name!r} to hold a dict written by write_tree, "
            f"found a {type(tree).__name__}; pass the group that write_tree was given."
        )
    return tree


def tree_digest(tree: Mapping[str, Any]) -> str:
    """Computes a SHA-256 checksum of a tree's canonical serialization.

    The serialization covers type tags, sorted dict keys, dtypes, shapes and raw bytes, so a tree and its
    `read_tree` round trip have the same digest, and any changed bit changes it.

    Args:
        tree: Tree as accepted by `write_tree`.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for part in _canonical_parts(_require_mapping(tree), ""):  # length prefixes keep the parts apart
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def write_attrs(node: h5py.HLObject, attrs: Mapping[str, str | int | float]) -> None:
    """Stores attributes on an HDF5 file, group or dataset.

    Strings are stored as fixed-length UTF-8, which HDF5 keeps in the (checksummed) object header, whereas
    variable-length strings go to the global heap, whose corruption can make HDF5 hang on reading.
    """
    for name, value in attrs.items():
        if isinstance(value, str):
            text = value.encode()
            node.attrs.create(name, np.bytes_(text), dtype=h5py.string_dtype("utf-8", max(len(text), 1)))
        else:
            node.attrs[name] = value


def read_attrs(node: h5py.HLObject) -> dict[str, Any]:
    """Returns the attributes of an HDF5 file, group or dataset as plain Python values."""
    return {name: _plain(value) for name, value in node.attrs.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    return value.tolist() if isinstance(value, (np.generic, np.ndarray)) else value


def _require_mapping(tree: Any) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping):
        raise TypeError(f"Expected the tree to be a mapping with str keys, found {type(tree).__name__}.")
    return tree


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _is_container(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple))


def _children(container: _Container, path: str) -> tuple[str, list[tuple[str, Any]]]:
    """Returns a container's kind and its (name, child) pairs."""
    if isinstance(container, Mapping):
        for key in container:
            _check_key(key, path)
        return "dict", list(container.items())
    return type(container).__name__, [(str(index), child) for index, child in enumerate(container)]


def _check_key(key: Any, path: str) -> None:
    where = f"in {path!r}" if path else "at the top level"
    if not isinstance(key, str):
        raise TypeError(f"Expected str keys, found {type(key).__name__} key {key!r} {where}; convert the keys to str.")
    if key in ("", ".") or "/" in key or "\0" in key:
        raise ValueError(
            f"Key {key!r} {where} cannot be an HDF5 name: keys must be non-empty, not '.', and free of "
            "'/' and NUL characters; rename the key."
        )


def _encode_leaf(value: Any, path: str) -> _Leaf:
    """Converts a non-container value to its stored form."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        try:
            data = tensor.numpy()
        except TypeError:  # numpy lacks the dtype
            data = tensor.view(_BITS_BY_SIZE[tensor.element_size()]).numpy()
        return _Leaf("tensor", data, str(tensor.dtype).removeprefix("torch."))
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _NUMERIC_DTYPE_KINDS:
        return _Leaf("ndarray" if isinstance(value, np.ndarray) else "npscalar", np.asarray(value))
    if isinstance(value, bool):
        return _Leaf("bool", np.asarray(value))
    if isinstance(value, int):
        if _INT64.min <= value <= _INT64.max:
            return _Leaf("int", np.asarray(value, np.int64))
        return _Leaf("bigint", _utf8(str(value)))
    if isinstance(value, float):
        return _Leaf("float", np.asarray(value, np.float64))
    if isinstance(value, str):
        return _Leaf("str", _utf8(value))
    if value is None:
        return _Leaf("none", None)
    raise TypeError(
        f"Cannot store the {type(value).__name__} at {path!r}: supported values are tensors, numeric or bool "
        "numpy arrays and scalars, int, float, bool, str, None, and dicts, lists and tuples of these. "
        "Convert the value to one of these types."
    )


def _utf8(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), np.uint8)


def _write_container(group: h5py.Group, container: _Container, path: str) -> None:
    kind, children = _children(container, path)
    write_attrs(group, {_KIND: kind})
    for name, child in children:
        child_path = _join(path, name)
        if _is_container(child):
            _write_container(group.create_group(name, track_order=True), child, child_path)
        else:
            _write_leaf(group, name, _encode_leaf(child, child_path))


def _write_leaf(group: h5py.Group, name: str, leaf: _Leaf) -> None:
    dataset = group.create_dataset(name, data=h5py.Empty("i1") if leaf.data is None else leaf.data)
    write_attrs(dataset, {_KIND: leaf.kind})
    if leaf.torch_dtype:
        write_attrs(dataset, {_TORCH_DTYPE: leaf.torch_dtype})


def _canonical_parts(value: Any, path: str) -> Iterator[bytes]:
    """Yields the canonical serialization of a value: type tags, sorted keys, dtypes, shapes, raw bytes."""
    if not _is_container(value):
        leaf = _encode_leaf(value, path)
        yield from (leaf.kind.encode(), leaf.torch_dtype.encode())
        if leaf.data is not None:
            yield from (leaf.data.dtype.str.encode(), str(leaf.data.shape).encode(), leaf.data.tobytes())
        return
    kind, children = _children(value, path)
    yield from (kind.encode(), str(len(children)).encode())
    for name, child in sorted(children, key=itemgetter(0)) if kind == "dict" else children:
        yield name.encode()
        yield from _canonical_parts(child, _join(path, name))


MAX_DEPTH = 64
"""Deepest nesting `read_tree` follows; a state tree is a few levels deep, a crafted file may be thousands."""


def _read_node(node: h5py.Group | h5py.Dataset, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"{node.name!r} is nested deeper than {MAX_DEPTH} levels; write_tree never writes that")
    kind = read_attrs(node).get(_KIND)
    if isinstance(node, h5py.Group) and kind == "dict":
        return {name: _read_node(_child(node, name), depth + 1) for name in node}
    if isinstance(node, h5py.Group) and kind in ("list", "tuple"):
        items = [_read_node(_child(node, str(index)), depth + 1) for index in range(len(node))]
        return items if kind == "list" else tuple(items)
    if isinstance(node, h5py.Dataset) and kind in _LEAF_READERS:
        check_dataset(node)
        return _LEAF_READERS[kind](node)
    raise ValueError(
        f"Expected HDF5 object {node.name!r} to carry a 'kind' attribute written by write_tree, "
        f"found {kind!r}; read only groups written by write_tree."
    )


def _child(group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset:
    """A member of ``group`` stored in it: soft and external links (to anywhere) are refused, not followed."""
    link = group.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{group.name}/{name} is a {type(link).__name__}; write_tree stores every value in place")
    return group[name]


def _read_tensor(dataset: h5py.Dataset) -> torch.Tensor:
    name = read_attrs(dataset).get(_TORCH_DTYPE)
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"Expected the torch dtype of {dataset.name!r}, found {name!r}; the file is corrupt or was not "
            "written by write_tree."
        )
    return torch.from_numpy(dataset[...]).view(dtype)


def _read_text(dataset: h5py.Dataset) -> str:
    return dataset[...].tobytes().decode()


_LEAF_READERS: dict[str, Callable[[h5py.Dataset], Any]] = {
    "tensor": _read_tensor,
    "ndarray": lambda dataset: dataset[...],
    "npscalar": lambda dataset: dataset[()],
    "bool": lambda dataset: bool(dataset[()]),
    "int": lambda dataset: int(dataset[()]),
    "bigint": lambda dataset: int(_read_text(dataset)),
    "float": lambda dataset: float(dataset[()]),
    "str": _read_text,
    "none": lambda dataset: None,
}
