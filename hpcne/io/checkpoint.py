"""Atomic, checksummed HDF5 checkpoints with fallback to the newest valid one."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py

from hpcne.io.tree import read_attrs, read_tree, tree_digest, write_attrs, write_tree
from hpcne.io.validate import open_for_reading, require_free_space

__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointError", "CheckpointManager", "CheckpointWarning"]

FORMAT_VERSION = 2
"""Version of the checkpoint layout written by `CheckpointManager.save`. 2: the checksum covers the root
attributes (the config among them) as well as the state; 1 (still read): the state only."""

_NAME = re.compile(r"ckpt-(\d{8,})\.h5")
_TMP_PREFIX, _TMP_SUFFIX = ".ckpt-", ".h5.tmp"
_STATE_GROUP = "state"
_RESERVED_ATTRS = ("format_version", "generation", "created", "checksum")
_LIBVER = "v110"  # the oldest HDF5 file format that checksums all metadata, so corruption is detected


class CheckpointWarning(UserWarning):
    """Warns that an unusable checkpoint was skipped in favour of an older one."""


class CheckpointError(RuntimeError):
    """Raised when a checkpoint, or every checkpoint of a directory, is unusable.

    Attributes:
        problems: The reason each unusable checkpoint file was rejected.
    """

    def __init__(self, message: str, problems: Mapping[Path, str]) -> None:
        super().__init__(message)
        self.problems = dict(problems)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: The checkpoint file.
        generation: The generation it was saved at.
        state: The saved state tree.
        attrs: All root attributes: ``format_version``, ``generation``, ``created``, ``checksum`` and the
            attributes given to `CheckpointManager.save`.
    """

    path: Path
    generation: int
    state: dict[str, Any]
    attrs: dict[str, Any]


class CheckpointManager:
    """Saves checkpoints ``ckpt-{generation:08d}.h5`` to a directory and loads the newest valid one.

    Saving writes a temporary file, fsyncs it and renames it into place, so a crash never leaves a partial
    checkpoint under a final name. Only one process should save to a directory at a time.

    Args:
        directory: Directory of the checkpoint files; created on the first save.
        keep: How many of the newest checkpoints to keep.
    """

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"Expected keep >= 1, found {keep}; keep at least the newest checkpoint.")
        self.directory = Path(directory)
        self.keep = keep

    def save(
        self, generation: int, state: Mapping[str, Any], attrs: Mapping[str, str | int | float] | None = None
    ) -> Path:
        """Atomically writes a checkpoint, then prunes all but the newest ``keep`` ones.

        Args:
            generation: Generation number; saving a generation again replaces its checkpoint.
            state: State tree, as accepted by `write_tree`.
            attrs: Extra root attributes, e.g. the config as JSON and package versions.

        Returns:
            The path of the checkpoint file.

        Raises:
            OSError: The disk lacks the space for it (checked first), or writing it failed; the message names
                the file, and the checkpoints written before are untouched.
        """
        attrs = dict(attrs or {})
        reserved = sorted(set(attrs) & set(_RESERVED_ATTRS))
        if reserved:
            raise ValueError(
                f"Attributes {reserved} are reserved for checkpoint metadata; pass them under other names."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ckpt-{generation:08d}.h5"
        previous = self.list()  # the newest checkpoint's size, with a margin, stands for this one's
        require_free_space(path, int(previous[-1].stat().st_size * 1.25) + 2**20 if previous else 2**20)
        handle, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=self.directory)
        os.close(handle)
        try:
            attrs |= {
                "format_version": FORMAT_VERSION,
                "generation": generation,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            with h5py.File(tmp_name, "w", libver=_LIBVER) as file:
                write_attrs(file, {**attrs, "checksum": _checksum(attrs, state)})
                write_tree(file.create_group(_STATE_GROUP, track_order=True), state)
            _fsync(tmp_name)
            os.replace(tmp_name, path)
        except (TypeError, ValueError):  # a state that cannot be stored: the caller's error, not the disk's
            Path(tmp_name).unlink(missing_ok=True)
            raise
        except Exception as err:  # h5py reports a full or failing disk as RuntimeError as often as OSError
            Path(tmp_name).unlink(missing_ok=True)
            raise OSError(f"Could not write the checkpoint {path} ({err}); the previous ones are kept.") from err
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync(self.directory)
        self._prune()
        return path

    def list(self) -> list[Path]:
        """Returns the checkpoint files, oldest generation first."""
        paths = (path for path in self.directory.glob("ckpt-*.h5") if _NAME.fullmatch(path.name))
        return sorted(paths, key=_generation_of)

    def load(self, path: str | Path) -> Checkpoint:
        """Loads and verifies one checkpoint file.

        Args:
            path: The checkpoint file.

        Returns:
            The checkpoint.

        Raises:
            CheckpointError: The file is unreadable, incomplete, from a newer format version, holds data that
                `write_tree` never writes (links, external storage, ...), or fails its checksum (which covers
                the root attributes, the config among them, and the state).
        """
        path = Path(path)
        try:
            with open_for_reading(path, swmr=False) as file:
                attrs = read_attrs(file)
                _check_layout(file, attrs)
                state = read_tree(file[_STATE_GROUP])
            checksum = attrs.pop("checksum")
            covered = attrs if attrs["format_version"] >= 2 else None  # format 1 checksummed the state only
            if _checksum(covered, state) != checksum:
                raise ValueError("checksum mismatch")
        except Exception as error:  # whatever a damaged file makes h5py raise (RuntimeError, OSError, ...)
            reason = str(error) if isinstance(error, (OSError, KeyError, ValueError)) else repr(error)
            raise _unusable(path, reason) from error
        attrs["checksum"] = checksum
        return Checkpoint(path, attrs["generation"], state, attrs)

    def load_latest(self) -> Checkpoint | None:
        """Loads the newest valid checkpoint, warning about each newer one that is skipped.

        Returns:
            The checkpoint, or None when the directory holds no checkpoint.

        Raises:
            CheckpointError: Checkpoints exist but none is valid.
        """
        paths = self.list()[::-1]
        problems: dict[Path, str] = {}
        for path, fallback in zip(paths, [*paths[1:], None]):
            try:
                return self.load(path)
            except CheckpointError as error:
                problems.update(error.problems)
                if fallback is not None:
                    warnings.warn(
                        f"Checkpoint {path.name} is unusable ({problems[path]}); falling back to {fallback.name}.",
                        CheckpointWarning,
                        stacklevel=2,
                    )
        if not problems:
            return None
        listing = "\n".join(f"  {path.name}: {reason}" for path, reason in problems.items())
        raise CheckpointError(
            f"None of the {len(problems)} checkpoints in {self.directory} is usable:\n{listing}\n"
            "Restore a checkpoint from a backup, or move the directory away to start from scratch.",
            problems,
        )

    def _prune(self) -> None:
        for path in self.list()[: -self.keep]:
            path.unlink(missing_ok=True)
        for path in self.directory.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            path.unlink(missing_ok=True)


def _checksum(attrs: Mapping[str, Any] | None, state: Mapping[str, Any]) -> str:
    """The digest of the root attributes (all but the checksum itself) and the state; None: the state only."""
    return tree_digest(state if attrs is None else {"attrs": dict(attrs), "state": state})


def _generation_of(path: Path) -> int:
    return int(_NAME.fullmatch(path.name).group(1))


def _check_layout(file: h5py.File, attrs: Mapping[str, Any]) -> None:
    """Raises ValueError, with the problem as message, when a file is not a complete checkpoint."""
    missing = [name for name in _RESERVED_ATTRS if name not in attrs]
    if missing:
        raise ValueError(f"missing root attributes {missing}")
    if _STATE_GROUP not in file:
        raise ValueError(f"missing the {_STATE_GROUP!r} group")
    if attrs["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"format version {attrs['format_version']} is newer than the supported version {FORMAT_VERSION}; "
            "upgrade hpcne to load it"
        )


def _unusable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} is unusable ({reason}). Load another checkpoint, or use "
        "CheckpointManager.load_latest() to fall back to the newest usable one.",
        {path: reason},
    )


def _fsync(path: str | Path) -> None:
    """Flushes a file or directory to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
