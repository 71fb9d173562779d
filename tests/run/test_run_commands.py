"""`hpcne report`, `evaluate` and `info`, and clear errors for bad input."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_helpers import GENERATIONS, TINY, Cli, copy_run

# ---------------------------------------------------------------------------- report


def test_report_prints_a_table_and_writes_a_plot_and_a_csv(in_process, baseline: Path, tmp_path: Path) -> None:
    import matplotlib.image

    first = copy_run(baseline, tmp_path / "first")
    short = ["--popsize", "4", "--generations", "3", "--episode-length", "20", "--workers", "1"]
    for seed in (1, 2):
        status, out, err = in_process(["train", "--seed", seed, *short, "--run-dir", tmp_path / f"seed{seed}"])
        assert status == 0, out + err
    runs = [first, tmp_path / "seed1", tmp_path / "seed2"]
    plot, csv = tmp_path / "out.png", tmp_path / "out.csv"
    status, out, err = in_process(["report", *runs, "--plot", plot, "--csv", csv])
    assert status == 0, out + err
    table = out.splitlines()
    for name, generations in (("first", GENERATIONS), ("seed1", 3), ("seed2", 3)):
        row = next(line for line in table if line.startswith(name))
        assert row.split()[1] == str(generations), out
    assert "best_eval" in table[0], out
    over = table[table.index("over 3 runs:") + 1 :]
    rows = [line.split() for line in over]
    stats = {row[0]: [float(v) for v in row[1:]] for row in rows if row and row[0] in ("mean", "std")}
    generations = [GENERATIONS, 3, 3]
    assert stats["mean"][0] == pytest.approx(np.mean(generations), abs=0.01), out
    assert stats["std"][0] == pytest.approx(np.std(generations, ddof=1), abs=0.01), out
    assert f"wrote learning curves to {plot}" in out
    image = matplotlib.image.imread(plot)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    frame = pd.read_csv(csv)
    assert len(frame) == GENERATIONS + 3 + 3
    assert frame.groupby("run").size().to_dict() == {"first": GENERATIONS, "seed1": 3, "seed2": 3}
    assert {"generation", "mean_eval", "best_eval", "center_eval", "interaction_count"} <= set(frame.columns)


def test_report_of_a_missing_run_is_a_clear_error(in_process, tmp_path: Path) -> None:
    status, _out, err = in_process(["report", tmp_path / "nothing-here"])
    assert status == 2
    assert "hpcne: error:" in err and "nothing-here" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- evaluate


def _mean_return(out: str) -> float:
    found = re.search(r"mean return (-?[\d.]+) ± [\d.]+ over 3 episodes", out)
    assert found, out
    return float(found.group(1))


def test_evaluate_scores_the_center_and_the_best_policy(in_process, baseline: Path) -> None:
    status, out, err = in_process(["evaluate", baseline, "--episodes", "3"])
    assert status == 0, out + err
    assert f"CartPole-v1, center at generation {GENERATIONS}:" in out
    assert 0 < _mean_return(out) <= 50  # the run's episodes are capped at 50 steps
    status, out, err = in_process(["evaluate", baseline, "--episodes", "3", "--which", "best"])
    assert status == 0, out + err
    assert "CartPole-v1, best solution (found at generation" in out
    assert 0 < _mean_return(out) <= 50


def _render_and_check(in_process, run_dir: Path, gif: Path) -> None:
    from PIL import Image

    status, out, err = in_process(["evaluate", run_dir, "--episodes", "3", "--render", gif])
    assert status == 0, out + err
    assert f"to {gif}" in out
    with Image.open(gif) as image:
        assert image.format == "GIF"
        assert image.n_frames > 1


def test_evaluate_renders_cartpole_to_a_gif(in_process, baseline: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("pygame") is None:
        # Then the error must be clear, not a traceback.
        status, out, err = in_process(["evaluate", baseline, "--episodes", "3", "--render", tmp_path / "x.gif"])
        assert status == 2 and "hpcne: error: Cannot render CartPole-v1" in err and "pygame" in err, out + err
        assert "Traceback" not in err
        pytest.skip("CartPole renders with pygame, which is not installed (pip install 'gymnasium[classic-control]')")
    _render_and_check(in_process, baseline, tmp_path / "cartpole.gif")


def test_evaluate_renders_a_mujoco_run_to_a_gif(in_process, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mujoco", reason="MuJoCo is not installed (pip install 'hpcne[mujoco]')")
    monkeypatch.delenv("DISPLAY", raising=False)  # off-screen: hpcne picks MUJOCO_GL=egl unless it is set
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    run_dir = tmp_path / "cheetah"
    flags = ["--env", "HalfCheetah-v5", "--popsize", "4", "--generations", "1", "--episode-length", "10"]
    status, out, err = in_process(["train", *flags, "--workers", "1", "--run-dir", run_dir])
    assert status == 0, out + err
    try:
        _render_and_check(in_process, run_dir, tmp_path / "cheetah.gif")
    except AssertionError as error:
        if "OpenGL" in str(error) or "EGL" in str(error):
            pytest.skip(f"no off-screen OpenGL (EGL) here: {error}")
        raise


# ---------------------------------------------------------------------------- info


def _check_info(out: str, ranks: int) -> None:
    for name in ("hpcne", "torch", "gymnasium", "numpy", "python", "mpi4py", "cuda"):
        assert re.search(rf"^{name}\s+\S", out, re.M), out
    assert re.search(rf"^ranks\s+{ranks} on 1 hosts$", out, re.M), out
    assert len(re.findall(r"^  rank \d+: host \S+, node-local rank \d+, device \S+$", out, re.M)) == ranks, out
    assert out.count("hpcne ") == 1  # printed once (by rank 0)


def test_info_prints_versions_and_the_rank_map(in_process) -> None:
    status, out, err = in_process(["info"])
    assert status == 0, out + err
    _check_info(out, 1)


@pytest.mark.slow
def test_info_under_mpi_prints_every_rank(cli: Cli) -> None:
    done = cli.run(["info"], ranks=2)
    assert done.returncode == 0, done.output
    _check_info(done.stdout, 2)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("toml", "flags", "expected"),
    [
        ("popsiz = 8\n", [], "Unknown option 'popsiz' in the config file {config}. Did you mean 'popsize'?"),
        ("env = CartPole\n", [], "Config file {config} is not valid TOML"),
        (
            "[algo_options]\ncenter_lerning_rate = 0.1\n",
            [],
            "Unknown option 'center_lerning_rate' for algo 'pgpe'. Did you mean 'center_learning_rate'?",
        ),
        (None, ["--algo", "foo"], "Unknown algo 'foo'; choose one of cem, cmaes, ga, pgpe, snes, xnes."),
        (None, ["--opt", "popsize"], "--opt takes KEY=VALUE (e.g. --opt center_learning_rate=0.1); got 'popsize'."),
        (None, ["--popsize", "0"], "popsize must be a positive integer or unset; got 0."),
        (None, ["--workers", "many"], "workers must be 'max' or a non-negative integer; got 'many'."),
        (None, ["--env", "NoSuchEnv-v0"], "Could not create the environment 'NoSuchEnv-v0'"),
        (None, ["--network", "Linear(3, 4)"], "The network cannot take an observation of length obs_length=4"),
        (None, ["--opt", "radius_init=-1"], "Bad options for algo 'pgpe'"),
        (None, ["--hang-timeout", "-5"], "hang_timeout must be a number of seconds, 0 to turn it off; got -5.0."),
    ],
)
def test_bad_input_is_a_clear_error(in_process, tmp_path: Path, toml: str | None, flags: list, expected: str) -> None:
    args = ["train"]
    config = tmp_path / "config.toml"
    if toml is not None:
        config.write_text(toml)
        args.append(config)
    common = ["--generations", "1", "--episode-length", "10", "--workers", "1", "--run-dir", tmp_path / "r"]
    status, out, err = in_process([*args, *common, *flags])  # the last flag wins
    assert status == 2, out + err
    assert err.startswith("hpcne: error: "), err
    assert expected.format(config=config) in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_bad_flag_value_is_an_argparse_usage_error(in_process, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        in_process(["train", "--backend", "threads"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'threads'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_config_error_under_mpi_ends_every_rank(cli: Cli, tmp_path: Path) -> None:
    """Rank 0 reads the config; an error there must not leave the other ranks waiting for it."""
    (tmp_path / "bad.toml").write_text("popsiz = 8\n")
    done = cli.run(["train", "bad.toml"], ranks=2, timeout=90)
    assert done.returncode == 2, done.output
    assert done.stderr.count("hpcne: error: Unknown option 'popsiz'") == 1, done.output
    assert "TIMED OUT" not in done.output and "Traceback" not in done.output


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_a_local_backend_under_a_multi_rank_launch_is_refused(cli: Cli, tmp_path: Path, backend: str) -> None:
    """Every rank would otherwise train the same run on its own, writing the same files."""
    done = cli.run(["train", *TINY, "--backend", backend, "--run-dir", tmp_path / "run"], ranks=2, timeout=90)
    assert done.returncode == 2, done.output
    assert done.stderr.count(f"hpcne: error: backend {backend!r} was asked for, but this command runs as 2 MPI") == 1
    assert "TIMED OUT" not in done.output and "Traceback" not in done.output
    assert not (tmp_path / "run").exists()


def test_resume_of_a_directory_without_checkpoints_is_a_clear_error(in_process, tmp_path: Path) -> None:
    status, _out, err = in_process(["resume", tmp_path])
    assert status == 2
    assert f"hpcne: error: {tmp_path} has no checkpoint to resume from" in err


def test_tiny_flags_are_valid(in_process, tmp_path: Path) -> None:
    """The flags the other tests share parse into a valid configuration (a cheap early warning)."""
    from hpcne.cli import _parser, _resolve_config

    config = _resolve_config(_parser().parse_args(["train", *TINY, "--run-dir", str(tmp_path)]))
    assert config.generations == GENERATIONS and config.observation_normalization is False


def test_hang_timeout_reaches_the_workers_and_a_resume_may_change_it(in_process, tmp_path: Path) -> None:
    import os

    status, out, err = in_process(["train", *TINY, "--generations", "1", "--hang-timeout", "30", "--run-dir", tmp_path])
    assert status == 0, out + err
    assert os.environ["HPCNE_HANG_TIMEOUT"] == "30.0"  # inherited by pool workers; every MPI rank sets its own
    status, out, err = in_process(["train", *TINY, "--generations", "2", "--hang-timeout", "0", "--run-dir", tmp_path])
    assert status == 0, out + err
    assert os.environ["HPCNE_HANG_TIMEOUT"] == "0.0"


def test_device_cuda_maps_workers_to_gpus_and_falls_back_to_the_cpu(
    in_process, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from hpcne.config import ConfigError, RunConfig
    from hpcne.parallel.devices import choose_device
    from hpcne.run import build_problem

    problem = build_problem(RunConfig(env="CartPole-v1", generations=1, device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    args = (problem.actor_config, problem.num_gpus_per_actor, problem.device)
    assert [str(choose_device(rank, *args)) for rank in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"device must be 'cpu' or 'cuda'; got 'gpu'"):
        RunConfig(env="CartPole-v1", generations=1, device="gpu").validate()
    if torch.cuda.is_available():
        return
    status, out, err = in_process(["train", *TINY, "--generations", "1", "--device", "cuda", "--run-dir", tmp_path])
    assert status == 0, out + err
    assert "hpcne: warning: device 'cuda' was asked for, but torch sees no CUDA device; using the CPU." in err
