"""What a new user meets at the edges of the command line: early refusals, hints that work, honest summaries."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_helpers import GENERATIONS, TINY, Cli

SHORT = ["--popsize", "6", "--episode-length", "30", "--workers", "1"]


# ---------------------------------------------------------------------------- refused before any work


@pytest.mark.parametrize(
    ("toml", "flags"),
    [(None, ["--opt", "center_lr=0.1"]), ("[algo_options]\ncenter_lr = 0.1\n", [])],
    ids=["flag", "config-file"],
)
def test_an_unknown_algo_option_is_refused_before_the_run_directory_or_workers_exist(
    in_process, tmp_path: Path, toml: str | None, flags: list[str]
) -> None:
    args = ["train", *flags, "--generations", "1", "--workers", "2", "--run-dir", tmp_path / "runs" / "x"]
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml)
        args.insert(1, tmp_path / "c.toml")
    status, out, err = in_process(args)
    assert status == 2, out + err
    assert err == "hpcne: error: Unknown option 'center_lr' for algo 'pgpe'. Did you mean 'center_learning_rate'?\n"
    assert not (tmp_path / "runs").exists()


def test_an_unknown_flag_gets_the_usage_of_its_subcommand_and_a_hint(in_process, capsys) -> None:
    for argv, unknown, hint in (
        (["train", "--lr", "0.1"], "--lr", "Algorithm options go through --opt (e.g. --opt center_learning_rate=0.1)."),
        (["train", "--generatons", "3"], "--generatons", "Did you mean '--generations'?"),
        (["resume", "r", "--seed", "3"], "--seed 3", "A resume may change only how long and where the run goes on"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            in_process(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        assert err.startswith(f"usage: hpcne {argv[0]} "), err
        assert f"hpcne {argv[0]}: error: unrecognized arguments: {unknown}. {hint}" in err, err


def test_resume_help_lists_only_what_a_resume_may_change(in_process, capsys) -> None:
    with pytest.raises(SystemExit):
        in_process(["resume", "--help"])
    text = capsys.readouterr().out
    for flag in ("--generations", "--target-reward", "--workers", "--checkpoint-every", "--hang-timeout"):
        assert flag in text
    for flag in ("--env", "--seed", "--algo", "--network", "--popsize", "--opt", "--obs-norm", "--run-dir"):
        assert not re.search(rf"{flag}\b", text), f"{flag} in:\n{text}"


def test_a_missing_run_directory_is_named_as_missing(in_process, tmp_path: Path) -> None:
    for command in ("evaluate", "resume"):
        status, _out, err = in_process([command, tmp_path / "nope"])
        assert status == 2
        assert f"hpcne: error: There is no run directory {tmp_path / 'nope'};" in err
        assert not (tmp_path / "nope").exists()


def test_an_output_in_a_missing_folder_is_refused_before_reading(in_process, tmp_path: Path) -> None:
    for flag in ("--plot", "--csv"):
        target = tmp_path / "nodir" / "x.png"
        status, _out, err = in_process(["report", tmp_path / "not-a-run", flag, target])  # the run is not read
        assert status == 2
        folder = f"the folder {target.parent} does not exist; create it or choose another path."
        assert err == f"hpcne: error: {flag} {target}: {folder}\n"


@pytest.mark.parametrize("name", ["x.avi", "x"])
def test_a_bad_video_format_is_refused_before_any_work(in_process, tmp_path: Path, name: str) -> None:
    status, _out, err = in_process(["evaluate", tmp_path / "no-run-either", "--render", tmp_path / name])
    assert status == 2
    assert err.startswith(f"hpcne: error: --render {tmp_path / name}: cannot write "), err
    assert ".mp4: MP4" in err and ".gif: animated GIF" in err, err


# ---------------------------------------------------------------------------- summaries and hints


def _next_commands(out: str) -> list[list[str]]:
    line = next(line for line in out.splitlines() if line.startswith("hpcne: next: "))
    return [shlex.split(command) for command in re.findall(r"`hpcne ([^`]+)`", line)]


@pytest.mark.parametrize("algo", ["ga", "pgpe"])
def test_the_next_hint_works_for_every_kind_of_searcher(in_process, tmp_path: Path, algo: str) -> None:
    run_dir = tmp_path / algo
    status, out, err = in_process(["train", "--algo", algo, *SHORT, "--generations", "2", "--run-dir", run_dir])
    assert status == 0, out + err
    commands = _next_commands(out)
    assert [command[0] for command in commands] == ["evaluate", "report"], out
    for command in commands:
        status, more, err = in_process(command)
        assert status == 0, f"{command}: {more}{err}"
    assert (run_dir / "curves.png").is_file()
    which = "best solution" if algo == "ga" else "center"
    assert f"scores the {which} over 10 episodes" in out


def test_the_final_lines_say_how_the_target_was_judged_and_where_everything_went(in_process, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    status, out, err = in_process(["train", *SHORT, "--target-reward", "5", "--generations", "9", "--run-dir", run_dir])
    assert status == 0, out + err
    judged = r"reached the target reward 5.0 at generation 1: the center's mean return over 5 episodes was ([\d.]+)"
    found = re.search(rf"hpcne: done \({judged}\)\.", out)
    assert found and float(found.group(1)) >= 5, out
    went = f"results (log and best solution) in {run_dir / 'results.h5'}; checkpoints in {run_dir / 'checkpoints'}"
    assert f"{went} (newest ckpt-00000001.h5)" in out, out
    ga = ["--algo", "ga", *SHORT, "--target-reward", "5"]
    status, out, err = in_process(["train", *ga, "--run-dir", tmp_path / "g"])
    assert status == 0, out + err
    assert (
        "(reached the target reward 5.0 at generation 1: the population best's mean return over 5 more episodes was"
        in out
    )


def _progress_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("gen ")]


def test_progress_lines_show_what_the_searcher_has_with_rate_and_eta(in_process, tmp_path: Path) -> None:
    runs = {
        "ga": ["--algo", "ga"],
        "cmaes": ["--algo", "cmaes", "--network", "Linear(obs_length, act_length)"],
        "sparse": ["--eval-center-every", "2"],
    }
    for name, flags in runs.items():
        status, out, err = in_process(["train", *flags, *SHORT, "--generations", "3", "--run-dir", tmp_path / name])
        assert status == 0, out + err
        lines = _progress_lines(out)
        assert len(lines) == 3, out
        for line in lines:
            assert "nan" not in line, out
            assert re.search(r"interactions [\d,]+ \([\d,]+/s\)  ETA (\d+s|\d+m\d\ds|\d+h\d\dm)$", line), line
        if name == "ga":
            assert all(" pop best " in line and " center " not in line for line in lines), out
        elif name == "cmaes":
            assert all(re.search(r" center -?\d+\.\d\d  ", line) for line in lines), out
        else:  # center evaluated at generation 2 only: shown with its generation at 3
            assert " center " not in lines[0] and re.search(r" center [\d.]+  ", lines[1]), out
            assert re.search(r" center [\d.]+ \(gen 2\)  ", lines[2]), out


def test_the_cli_tiny_run_still_ends_at_its_generation_limit(baseline: Path) -> None:
    """The shared tiny run (no target) is unaffected by the target judgement: it runs all its generations."""
    from hpcne.io.analysis import read_results

    assert read_results(baseline)["generation"].tolist() == list(range(1, GENERATIONS + 1))


# ---------------------------------------------------------------------------- library noise


@pytest.mark.slow
def test_mujoco_and_sdl_noise_stay_out_of_the_output(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("mujoco", reason="MuJoCo is not installed (pip install 'hpcne[mujoco]')")
    flags = ["--env", "HalfCheetah-v5", "--popsize", "4", "--generations", "1", "--episode-length", "5"]
    done = cli.run(["train", *flags, "--workers", "2", "--run-dir", "cheetah"])
    assert done.returncode == 0, done.output
    assert "deprecated" not in done.output and "WARNING" not in done.output, done.output
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    pytest.importorskip("pygame", reason="CartPole renders with pygame (gymnasium[classic-control])")
    done = cli.run(["train", *TINY, "--generations", "1", "--workers", "1", "--run-dir", "pole"])
    assert done.returncode == 0, done.output
    done = cli.run(["evaluate", "pole", "--episodes", "1", "--render", "pole.gif"], XDG_RUNTIME_DIR="/nonexistent")
    assert done.returncode == 0, done.output
    assert "XDG_RUNTIME_DIR" not in done.output and (tmp_path / "pole.gif").is_file(), done.output


# ---------------------------------------------------------------------------- videos


def test_evaluate_renders_an_mp4_with_progress_lines(in_process, baseline: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("pygame", reason="CartPole renders with pygame (gymnasium[classic-control])")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="pip install 'hpcne[video]'")
    import hpcne.io.video

    monkeypatch.setattr(hpcne.io.video, "PROGRESS_EVERY", 10)
    video = tmp_path / "pole.mp4"
    status, out, err = in_process(["evaluate", baseline, "--episodes", "1", "--render", video])
    assert status == 0, out + err
    written = re.search(r"hpcne: wrote (\d+) frames of CartPole-v1 to ", out)
    assert written, out
    frames = int(written.group(1))
    assert 10 < frames <= 51, out  # the tiny run's episodes stop after 50 steps: 1 reset + 50 step frames
    progress = re.findall(r"^hpcne: rendering of CartPole-v1: (\d+) frames \(\d+ s\)$", out, re.M)
    assert progress == [str(n) for n in range(10, frames + 1, 10)], out
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    assert meta["size"] == (600, 400) and meta["fps"] == 50  # CartPole's render size and render_fps
    pixels = [frame for frame in reader]
    assert len(pixels) == frames
    assert len(set(pixels)) > 1  # the pole moves


# ---------------------------------------------------------------------------- comparing groups of runs


def test_report_compares_groups_of_seeds(in_process, tmp_path: Path) -> None:
    from hpcne.io.analysis import read_results

    lengths = {"pgpe": (3, 5, 6), "snes": (4, 4)}
    for algo, generations in lengths.items():
        for seed, count in enumerate(generations):
            run = ["train", "--algo", algo, *SHORT, "--seed", seed, "--generations", count]
            status, out, err = in_process([*run, "--run-dir", tmp_path / algo / f"seed{seed}"])
            assert status == 0, out + err
    plot, csv = tmp_path / "cmp.png", tmp_path / "cmp.csv"
    groups = ["--group", f"pgpe={tmp_path}/pgpe/seed*", "--group", f"snes={tmp_path}/snes/seed0,{tmp_path}/snes/seed1"]
    status, out, err = in_process(["report", *groups, "--plot", plot, "--csv", csv])
    assert status == 0, out + err
    table = out[out.index("over the seeds of each group") :].splitlines()
    assert table[1].split() == ["group", "pgpe", "snes"], out
    body = [line.split() for line in table[2:] if not line.startswith("hpcne: ")]
    rows = {" ".join(words[:-2]): [float(v) for v in words[-2:]] for words in body}
    for column, algo in enumerate(lengths):
        logs = [read_results(tmp_path / algo / f"seed{seed}") for seed in range(len(lengths[algo]))]
        best = np.array([log["best_eval"].max() for log in logs])
        final_center = np.array([log["center_eval"].iloc[-1] for log in logs])
        t = {2: 12.706, 3: 4.303}[len(logs)]
        assert rows["runs"][column] == len(logs)
        assert rows["best mean"][column] == pytest.approx(best.mean(), abs=0.01)
        assert rows["final center mean"][column] == pytest.approx(final_center.mean(), abs=0.01)
        assert rows["final center std"][column] == pytest.approx(final_center.std(ddof=1), abs=0.01)
        half = t * final_center.std(ddof=1) / np.sqrt(len(logs))
        assert rows["final center ±95%"][column] == pytest.approx(half, abs=0.01)
        assert rows["generations"][column] == pytest.approx(np.mean(lengths[algo]), abs=0.01)
    assert "pgpe/seed2" in out and "snes/seed1" in out
    frame = pd.read_csv(csv)
    assert frame.groupby("group").size().to_dict() == {"pgpe": 3 + 5 + 6, "snes": 4 + 4}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--group", "pgpe"], "--group takes NAME=GLOB"),
        (["--group", "a=nothing/here*"], "--group a: 'nothing/here*' matches no run directory"),
        ([], "Give run directories, or groups of them with --group NAME=GLOB, not both or neither."),
        (["run", "--min-runs", "0"], "--min-runs must be a positive integer; got 0."),
    ],
)
def test_report_refuses_bad_groups(in_process, tmp_path: Path, args: list[str], expected: str) -> None:
    status, _out, err = in_process(["report", *args])
    assert status == 2 and expected in err, err


# ---------------------------------------------------------------------------- benchmarks


def test_the_benchmarks_have_one_home_and_say_what_they_measure() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    assert not list((root / "scripts").glob("bench_*.py"))

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    top = run("--help")
    assert "issue" not in top
    for measure in ("throughput", "rollout", "parallel", "scaling", "evotorch", "solve", "comm"):
        assert re.search(rf"^    {measure} ", top, re.M), top
    assert run("rollout", "--help").startswith("usage: python -m benchmarks rollout ")
    assert run("parallel", "--help").startswith("usage: python -m benchmarks parallel ")
