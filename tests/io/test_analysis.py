"""Tests of loading, summarizing and plotting results files."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from hpcne.io import RESULT_COLUMNS, ResultsWriter, load_runs, plot_learning_curves, read_results, summarize


def _write_run(run_dir: Path, *, generations: int = 20, scale: float = 1.0, algorithm: str = "pgpe") -> Path:
    """Writes a synthetic run whose values are simple functions of the generation."""
    run_dir.mkdir(parents=True)
    with ResultsWriter(run_dir / "results.h5", RESULT_COLUMNS, attrs={"algorithm": algorithm}) as writer:
        for generation in range(1, generations + 1):
            writer.append(
                {
                    "generation": generation,
                    "mean_eval": scale * generation,
                    "best_eval": scale * generation * 2,
                    "center_eval": scale * generation * 3 if generation % 5 == 0 else math.nan,
                    "popsize": 10,
                    "interaction_count": 1000 * generation,
                    "episode_count": 10 * generation,
                    "wall_time": 0.5 * generation * scale,
                }
            )
    return run_dir


def test_read_results_accepts_run_dir_or_file(tmp_path: Path) -> None:
    run_dir = _write_run(tmp_path / "run")
    from_dir, from_file = read_results(run_dir), read_results(run_dir / "results.h5")
    assert from_dir.equals(from_file) and len(from_dir) == 20
    assert from_dir.attrs["algorithm"] == "pgpe"
    with pytest.raises(FileNotFoundError, match=r"run directory containing results\.h5"):
        read_results(tmp_path / "missing")


def test_load_runs_names_runs_uniquely(tmp_path: Path) -> None:
    paths = [_write_run(tmp_path / "a" / "seed0"), _write_run(tmp_path / "b" / "seed0")]
    paths.append(_write_run(tmp_path / "c", generations=5) / "results.h5")
    runs = load_runs(paths)
    assert runs.columns[0] == "run"
    assert runs["run"].unique().tolist() == ["seed0", "seed0-2", "c"]
    assert runs.attrs["runs"]["c"]["algorithm"] == "pgpe"
    with pytest.raises(ValueError, match="at least one"):
        load_runs([])


def test_summarize_reports_final_values(tmp_path: Path) -> None:
    runs = load_runs([_write_run(tmp_path / "one"), _write_run(tmp_path / "two", generations=12, scale=2.0)])
    summary = summarize(runs)
    assert summary.index.tolist() == ["one", "two"]
    expected_columns = ["generations", "final_mean_eval", "best_eval", "final_center_eval"]
    expected_columns += ["total_interactions", "total_episodes", "wall_time"]
    assert summary.columns.tolist() == expected_columns
    assert summary.loc["one"].tolist() == [20, 20.0, 40.0, 60.0, 20000, 200, 10.0]
    assert summary.loc["two"].tolist() == [12, 24.0, 48.0, 60.0, 12000, 120, 12.0]


def test_summarize_leaves_out_center_eval_without_values(tmp_path: Path) -> None:
    runs = load_runs([_write_run(tmp_path / "run")]).assign(center_eval=np.nan)
    assert "final_center_eval" not in summarize(runs)
    assert summarize(read_results(tmp_path / "run")).index.tolist() == ["run"]


def _assert_png(path: Path) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600
    assert image[..., :3].std() > 0


def test_plot_single_run(tmp_path: Path) -> None:
    out = plot_learning_curves(read_results(_write_run(tmp_path / "run")), tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    _assert_png(out)


def test_plot_several_runs_and_groups(tmp_path: Path) -> None:
    runs = load_runs(
        _write_run(tmp_path / f"seed{seed}", generations=15 + seed, scale=1 + seed / 10, algorithm=algorithm)
        for seed, algorithm in enumerate(["pgpe", "pgpe", "cem"])
    )
    _assert_png(plot_learning_curves(runs, tmp_path / "all.png"))
    _assert_png(plot_learning_curves(runs, tmp_path / "grouped.png", group_by="algorithm"))
    with pytest.raises(ValueError, match="Cannot group run 'seed0' by 'unknown'"):
        plot_learning_curves(runs, tmp_path / "bad.png", group_by="unknown")


def test_hpcne_analysis_is_the_public_path_of_the_analysis_functions() -> None:
    import hpcne.analysis
    import hpcne.io.analysis

    for name in hpcne.analysis.__all__:
        assert getattr(hpcne.analysis, name) is getattr(hpcne.io.analysis, name)
    assert set(hpcne.analysis.__all__) == set(hpcne.io.analysis.__all__)


def test_runs_of_different_lengths_are_aligned_not_cut_to_the_shortest() -> None:
    from hpcne.io.analysis import align_runs

    # Three runs of 7, 15 and 18 generations (as when one reaches its target early), each ending at 500.
    curves = [np.array([np.arange(1.0, n + 1), np.linspace(10, 500, n)]) for n in (7, 15, 18)]
    aligned = align_runs(curves, min_runs=2)
    assert aligned["x"].tolist() == list(range(1, 16))  # up to where two runs still have data
    assert aligned["runs"].tolist() == [3] * 7 + [2] * 8
    assert aligned["mean"].iloc[-1] == pytest.approx((500 + np.linspace(10, 500, 18)[14]) / 2)
    assert aligned["mean"].iloc[6] == pytest.approx(
        np.mean([500, np.linspace(10, 500, 15)[6], np.linspace(10, 500, 18)[6]])
    )
    assert align_runs(curves, min_runs=1)["x"].iloc[-1] == 18
    everywhere = align_runs(curves, min_runs=3)
    assert everywhere["x"].tolist() == list(range(1, 8)) and (everywhere["runs"] == 3).all()
    values = np.array([np.linspace(10, 500, n)[0] for n in (7, 15, 18)])
    assert everywhere["half_width"].iloc[0] == pytest.approx(4.303 * values.std(ddof=1) / np.sqrt(3))


def test_mean_interval_uses_student_t() -> None:
    from hpcne.io.analysis import mean_interval

    assert mean_interval(np.array([1.0, 3.0])) == pytest.approx(
        (2.0, math.sqrt(2), 12.706 * math.sqrt(2) / math.sqrt(2))
    )
    mean, std, half = mean_interval(np.array([5.0, math.nan]))
    assert mean == 5.0 and math.isnan(std) and math.isnan(half)
    many = np.arange(100.0)
    assert mean_interval(many)[2] == pytest.approx(1.96 * many.std(ddof=1) / 10)


def test_a_training_process_loads_neither_pandas_nor_matplotlib() -> None:
    """The analysis functions load pandas and matplotlib on first use: a training process, a pool worker
    or an MPI rank imports the run, the CLI and the file writers without them (about a second each)."""
    code = (
        "import sys, hpcne.cli, hpcne.run, hpcne.io, hpcne.logging, hpcne.parallel.worker\n"
        "def loaded(): return ','.join(m for m in ('matplotlib', 'pandas') if m in sys.modules)\n"
        "print(loaded()); hpcne.io.load_runs; print(loaded())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["", "matplotlib,pandas"]
