"""`hpcne train --env CartPole-v1` with the default settings solves CartPole (the README's first command).

It takes 10-60 s on 2 cores, so it runs only with HPCNE_LONG_TESTS=1 (e.g. before changing ALGO_DEFAULTS).
It prints how long it took; the time is a figure for the README, not a pass/fail condition.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from run_helpers import Cli

from hpcne.io.analysis import read_results


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HPCNE_LONG_TESTS") != "1", reason="set HPCNE_LONG_TESTS=1 to run it")
def test_the_defaults_solve_cartpole(cli: Cli, tmp_path: Path) -> None:
    started = time.monotonic()
    done = cli.run(["train", "--env", "CartPole-v1", "--target-reward", "500", "--run-dir", tmp_path / "run"])
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.output
    assert "reached the target reward 500" in done.stdout, done.output
    log = read_results(tmp_path / "run")
    print(f"solved at generation {len(log)} after {seconds:.0f} s, {log['interaction_count'].iloc[-1]} interactions")
