"""Every config in examples/ loads and trains for two generations (episodes cut to 20 steps, in-process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpcne.config import RunConfig, load_toml
from hpcne.io.analysis import read_results

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
ALGORITHMS = {"pgpe", "snes", "xnes", "cem", "cmaes", "ga"}
MUJOCO_ENVS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer", "Reacher", "InvertedPendulum")


def test_there_is_an_example_per_algorithm_and_one_for_mujoco() -> None:
    configs = [RunConfig.from_dict(load_toml(path), source=str(path)) for path in EXAMPLES]
    assert {config.algo for config in configs} == ALGORITHMS
    cheetah = [c for c in configs if c.env == "HalfCheetah-v5"]
    assert len(cheetah) == 1
    assert cheetah[0].algo == "pgpe" and cheetah[0].observation_normalization
    assert cheetah[0].searcher_options()["optimizer"] == "clipup"


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_trains_for_two_generations(in_process, tmp_path: Path, example: Path) -> None:
    config = RunConfig.from_dict(load_toml(example), source=str(example))
    if config.env.split("/")[-1].startswith(MUJOCO_ENVS):
        try:
            import mujoco  # noqa: F401
        except ImportError as err:
            pytest.skip(f"{example.name} needs MuJoCo, but `import mujoco` fails: {err}")
    run_dir = tmp_path / "run"
    smoke = ["--generations", "2", "--episode-length", "20", "--workers", "1", "--run-dir", run_dir]
    status, out, err = in_process(["train", example, *smoke])
    assert status == 0, out + err
    assert "done (reached 2 generations)" in out or "reached the target reward" in out, out
    assert read_results(run_dir)["generation"].tolist()[-1] <= 2


def test_the_training_guide_quotes_the_examples_as_they_are() -> None:
    """Every ```toml block of docs/TRAINING.md that starts with ``# examples/NAME`` is that file, verbatim."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "TRAINING.md").read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```toml\n")[1:]]
    quoted = {
        block.split("\n", 1)[0][2:]: block.split("\n", 1)[1] for block in blocks if block.startswith("# examples/")
    }
    assert "examples/cartpole-pgpe.toml" in quoted
    for name, block in quoted.items():
        assert block == (root / name).read_text(), f"docs/TRAINING.md quotes {name} differently from the file"


def _shape(line: str) -> str:
    return re.sub(r"\d[\d,.]*", "N", line)


def test_the_training_guide_shows_the_output_of_the_current_code(in_process, tmp_path: Path, monkeypatch) -> None:
    """The sample output in docs/TRAINING.md has the shape of what `hpcne train --env CartPole-v1` prints now."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "TRAINING.md").read_text()
    sample = text.split("What the first command prints", 1)[1].split("```\n", 2)[1]
    documented = [line for line in sample.splitlines() if line != "..." and "(stderr)" not in line]
    monkeypatch.chdir(tmp_path)
    status, out, err = in_process(["train", "--env", "CartPole-v1", "--popsize", "6", "--episode-length", "30",
                                   "--workers", "1", "--generations", "50"])  # fmt: skip
    assert status == 0, out + err
    printed = {_shape(line) for line in out.splitlines()}
    missing = [line for line in documented if _shape(line) not in printed]
    assert not missing, f"docs/TRAINING.md shows lines the code no longer prints:\n{missing}\nit prints:\n{out}"
