"""`hpcne train --distributed`: the same run as the centralized one, also when a restart switches the mode,
the number of MPI ranks and the split (the pool and serial backends: tests/parallel/test_layouts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import GENERATIONS, TINY, Cli, assert_same_run


@pytest.mark.slow
def test_restarts_across_modes_and_rank_counts_match_the_centralized_serial_run(
    cli: Cli, baseline: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text("subbatch_size = 3\n")
    legs = [  # (ranks, arguments): each leg trains to its --generations, the next one resumes
        (2, ["--distributed", "--generations", "9"]),
        (3, [dynamic, "--no-distributed", "--generations", str(GENERATIONS)]),
    ]  # centralized -> distributed at a restart: tests/algorithms/test_distributed.py
    for ranks, arguments in legs:
        done = cli.run(["train", *TINY, "--run-dir", run_dir, *arguments], ranks=ranks)
        assert done.returncode == 0, done.output
        assert "done (reached" in done.stdout, done.output
    assert_same_run(run_dir, baseline)
