"""`hpcne train --distributed`: the same run as the centralized one, also when a restart switches the mode,
the number of MPI ranks and the split (the pool and serial backends: tests/parallel/test_layouts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import GENERATIONS, TINY, Cli, assert_same_run

from hpcne.io.analysis import read_results


@pytest.mark.slow
def test_restarts_across_modes_and_rank_counts_match_the_centralized_serial_run(
    cli: Cli, baseline: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    dynamic = tmp_path / "dynamic.toml"
    dynamic.write_text("subbatch_size = 3\n")
    legs = [  # (ranks, arguments): each leg trains to its --generations, the next one resumes
        (2, ["--distributed", "--generations", "6"]),
        (3, ["--distributed", "--generations", "12"]),  # every rank adopts the checkpoint's state
        (3, [dynamic, "--no-distributed", "--generations", str(GENERATIONS)]),
    ]  # centralized -> distributed at a restart: tests/algorithms/test_distributed.py
    for ranks, arguments in legs:
        done = cli.run(["train", *TINY, "--run-dir", run_dir, *arguments], ranks=ranks)
        assert done.returncode == 0, done.output
        assert "done (reached" in done.stdout, done.output
    assert_same_run(run_dir, baseline)


def test_a_resume_with_another_noise_table_is_refused_and_leaves_the_run_as_it_was(cli: Cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = cli.run(["train", *TINY, "--run-dir", run_dir, "--generations", "2"], HPCNE_NOISE_TABLE="3000000")
    assert first.returncode == 0, first.output
    assert read_results(run_dir).attrs["noise_table"] == 3_000_000
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    refused = cli.run(["train", *TINY, "--run-dir", run_dir, "--generations", "4"])  # the default table
    assert refused.returncode == 2, refused.output
    assert "3,000,000 values" in refused.stderr and "this process has 1,048,576" in refused.stderr, refused.output
    assert "export HPCNE_NOISE_TABLE=3000000" in refused.stderr, refused.output
    assert sorted((run_dir / "checkpoints").iterdir()) == checkpoints  # no fallback, no fresh start
    assert len(read_results(run_dir)) == 2
    resumed = cli.run(["train", *TINY, "--run-dir", run_dir, "--generations", "4"], HPCNE_NOISE_TABLE="3000000")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.output
