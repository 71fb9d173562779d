"""Fixtures of the training-run tests; the helpers they use are in run_helpers.py.

Most tests run ``python -m hpcne`` as a subprocess (``cli``), because stopping, killing and MPI need real
processes; cheap commands run in-process (``in_process``). The uninterrupted serial run that interrupted
runs are compared with (``baseline``) is made once per session.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from run_helpers import TINY, TINY_LONG, TINY_OBS_NORM, Cli, Running


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """Runs ``hpcne`` in this test's tmp_path; kills whatever is still running at the end."""
    helper = Cli(tmp_path)
    started: list[Running] = []
    original = helper.start

    def start(args: Sequence[str], *, ranks: int = 0, **env: str) -> Running:
        running = original(args, ranks=ranks, **env)
        started.append(running)
        return running

    helper.start = start  # type: ignore[method-assign]
    yield helper
    for running in started:
        if running.alive():
            running.kill_group()
            running.proc.wait()


@pytest.fixture(scope="session")
def _baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The uninterrupted runs, made side by side (most of their time is starting Python)."""
    workdir = tmp_path_factory.mktemp("baseline")
    cli = Cli(workdir)
    started = {
        name: (workdir / name, cli.start(["train", *flags, "--workers", "1", "--run-dir", workdir / name]))
        for name, flags in (("plain", TINY), ("obs_norm", TINY_OBS_NORM), ("long", TINY_LONG))
    }
    for _, running in started.values():
        done = running.wait()
        assert done.returncode == 0, done.output
    return {name: run_dir for name, (run_dir, _) in started.items()}


@pytest.fixture(scope="session")
def baseline(_baselines: dict[str, Path]) -> Path:
    """The uninterrupted serial tiny run (TINY) that interrupted runs are compared with. Do not modify it."""
    return _baselines["plain"]


@pytest.fixture(scope="session")
def baseline_long(_baselines: dict[str, Path]) -> Path:
    """The same run, LONG_GENERATIONS long (TINY_LONG)."""
    return _baselines["long"]


@pytest.fixture(scope="session")
def baseline_obs_norm(_baselines: dict[str, Path]) -> Path:
    """The same with observation normalization (TINY_OBS_NORM)."""
    return _baselines["obs_norm"]


@pytest.fixture
def in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run ``hpcne.cli.run(argv)`` in this process (cheap; for commands that need no signals or MPI).

    Returns (status, stdout, stderr). The stop-signal handlers and the forced backend that ``train``
    installs are put back afterwards.
    """
    from hpcne.parallel import runtime, signals

    monkeypatch.setenv("HPCNE_QUIET", "1")
    monkeypatch.setenv("HPCNE_HANG_TIMEOUT", "600")  # `train` sets it; this puts it back afterwards
    monkeypatch.delenv("HPCNE_BACKEND", raising=False)
    saved = {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS}

    def call(argv: Sequence[str]) -> tuple[int, str, str]:
        from hpcne.cli import run

        capsys.readouterr()
        status = run([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    try:
        yield call
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        signals.clear_stop()
        runtime.use_backend(None)
