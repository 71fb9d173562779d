"""What `hpcne train` does with an existing run directory: falls back from a corrupt checkpoint, extends a
finished run, and refuses a configuration that would change the problem.

These run in-process (``hpcne.cli.run``) on copies of the shared baseline run: no signals are involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from run_helpers import GENERATIONS, TINY, assert_same_run, copy_run, deterministic_columns, load_run

from hpcne.io.analysis import read_results
from hpcne.io.checkpoint import CheckpointManager


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(in_process, baseline: Path, tmp_path: Path) -> None:
    run_dir = copy_run(baseline, tmp_path / "run")
    newest = run_dir / "checkpoints" / f"ckpt-{GENERATIONS:08d}.h5"
    with newest.open("r+b") as f:
        f.truncate(newest.stat().st_size // 2)
    status, out, err = in_process(["train", *TINY, "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err
    previous = f"ckpt-{GENERATIONS - 1:08d}.h5"
    assert f"hpcne: warning: Checkpoint {newest.name} is unusable (" in err, err
    assert f"falling back to {previous}" in err, err
    assert err.count("falling back") == 1, err
    assert f"resuming {run_dir} from generation {GENERATIONS - 1} ({previous})" in out, out
    assert "Traceback" not in err
    assert_same_run(run_dir, baseline)


def test_a_run_killed_before_its_first_checkpoint_starts_again_and_matches(
    in_process, baseline: Path, tmp_path: Path
) -> None:
    """What SIGKILL before the first checkpoint leaves: a results file with rows, no checkpoint."""
    run_dir = copy_run(baseline, tmp_path / "run")
    for path in (run_dir / "checkpoints").glob("ckpt-*.h5"):
        path.unlink()
    status, out, err = in_process(["train", *TINY, "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err
    assert "resuming" not in out
    assert_same_run(run_dir, baseline)


def test_every_checkpoint_corrupt_is_a_clear_error(in_process, baseline: Path, tmp_path: Path) -> None:
    run_dir = copy_run(baseline, tmp_path / "run")
    for path in (run_dir / "checkpoints").glob("ckpt-*.h5"):
        path.write_bytes(b"not HDF5")
    status, out, err = in_process(["resume", run_dir])
    assert status == 1, out + err
    assert "hpcne: error: None of the 3 checkpoints" in err, err
    assert "Traceback" not in err


def test_more_generations_extend_a_finished_run(in_process, baseline: Path, tmp_path: Path) -> None:
    run_dir = copy_run(baseline, tmp_path / "run")
    status, out, err = in_process(["resume", run_dir, "--generations", str(GENERATIONS + 2)])
    assert status == 0, out + err
    assert f"resuming {run_dir} from generation {GENERATIONS}" in out
    assert f"done (reached {GENERATIONS + 2} generations)" in out
    extended, original = read_results(run_dir), read_results(baseline)
    assert extended["generation"].tolist() == list(range(1, GENERATIONS + 3))
    for column in deterministic_columns(original):
        assert np.array_equal(extended[column].to_numpy()[:GENERATIONS], original[column].to_numpy(), equal_nan=True), (
            column
        )
    assert load_run(run_dir).checkpoint_generation == GENERATIONS + 2


def test_the_same_command_on_a_finished_run_changes_nothing(in_process, baseline: Path, tmp_path: Path) -> None:
    run_dir = copy_run(baseline, tmp_path / "run")
    status, out, err = in_process(["train", *TINY, "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err
    assert f"done (reached {GENERATIONS} generations)" in out
    assert "gen " not in out  # no generation ran
    assert_same_run(run_dir, baseline)


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--env", "Acrobot-v1"], "env"),
        (["--network", "Linear(obs_length, act_length)"], "network"),
        (["--seed", "8"], "seed"),
        (["--algo", "cem", "--opt", "parenthood_ratio=0.5", "--opt", "stdev_init=0.5"], "algo"),
        (["--obs-norm"], "observation_normalization"),
        (["--popsize", "10"], "popsize"),
    ],
)
def test_a_resume_that_changes_the_problem_is_refused(
    in_process, baseline: Path, tmp_path: Path, flags: list[str], key: str
) -> None:
    run_dir = copy_run(baseline, tmp_path / "run")
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    status, out, err = in_process(["train", *TINY, "--workers", "1", "--run-dir", run_dir, *flags])
    assert status == 2, out + err
    assert f"{run_dir} holds a run with a different problem" in err, err
    assert f"\n  {key}: the run has " in err, err
    assert "Use another --run-dir for a new run." in err
    assert "Traceback" not in err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
    assert len(read_results(run_dir)) == GENERATIONS


def test_results_left_by_a_run_killed_before_its_first_checkpoint_are_replaced(
    in_process, baseline: Path, tmp_path: Path
) -> None:
    """A run directory with results but no checkpoint holds nothing to resume; a new run (even of
    another problem) starts afresh there instead of failing on the old file's layout."""
    run_dir = copy_run(baseline, tmp_path / "run")
    for path in (run_dir / "checkpoints").glob("ckpt-*.h5"):
        path.unlink()
    acrobot = ["--env", "Acrobot-v1", "--popsize", "4", "--generations", "1", "--episode-length", "20"]
    status, out, err = in_process(["train", *acrobot, "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err
    results = read_results(run_dir)
    assert results["generation"].tolist() == [1]
    assert results.attrs["env"] == "Acrobot-v1"


def test_resuming_with_other_library_versions_warns(in_process, baseline: Path, tmp_path: Path) -> None:
    run_dir = copy_run(baseline, tmp_path / "run")
    manager = CheckpointManager(run_dir / "checkpoints")
    checkpoint = manager.load_latest()
    assert checkpoint is not None
    attrs = {
        k: v for k, v in checkpoint.attrs.items() if k not in ("format_version", "generation", "created", "checksum")
    }
    manager.save(checkpoint.generation, checkpoint.state, {**attrs, "version_torch": "0.0.1"})  # the checksum covers it
    status, out, err = in_process(["resume", run_dir, "--generations", str(GENERATIONS + 1)])
    assert status == 0, out + err
    assert "hpcne: warning: the checkpoint was written with other versions (torch 0.0.1 -> " in err, err
