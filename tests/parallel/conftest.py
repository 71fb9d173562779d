"""Every parallel test starts with the automatic backend choice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hpcne.parallel import runtime


@pytest.fixture(autouse=True)
def _automatic_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clear HPCNE_BACKEND and any backend forced by an earlier test."""
    monkeypatch.delenv("HPCNE_BACKEND", raising=False)
    runtime.use_backend(None)
    yield
    runtime.use_backend(None)
