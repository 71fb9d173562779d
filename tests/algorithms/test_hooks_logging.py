"""The step loop: hooks, status entries, run(), and the stdout and pandas loggers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from hpcne.algorithms import SNES, GeneticAlgorithm, SearchAlgorithm
from hpcne.core import Problem, Solution
from hpcne.logging import Logger, PandasLogger, StdOutLogger


def test_hooks_run_in_order_and_after_step_results_join_the_status(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    calls: list[Any] = []
    snes.before_step_hook.append(lambda: calls.append("before"))
    snes.after_step_hook.append(lambda: {"extra": 2 * snes.status["iter"]})
    snes.after_step_hook.append(lambda: None)
    snes.log_hook.append(lambda status: calls.append(("log", status["iter"], status["extra"])))
    snes.end_of_run_hook.append(lambda status: calls.append(("end", status["iter"])))
    snes.run(2)
    assert calls == ["before", ("log", 1, 2), "before", ("log", 2, 4), ("end", 2)]
    assert snes.status["extra"] == 4


def test_after_step_hook_must_return_a_dict(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    snes.after_step_hook.append(lambda: 42)
    with pytest.raises(TypeError, match="must return a dict"):
        snes.step()


@pytest.mark.parametrize("sense", ["min", "max"])
def test_status_entries(sense: str, make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(sense=sense), stdev_init=1.0)
    assert snes.status["iter"] == 0 and snes.status["center"].shape == (10,)
    snes.run(3)
    status = snes.status
    assert status["iter"] == snes.step_count == snes.steps_count == 3
    assert status["popsize"] == len(snes.population) == 10
    assert status["stdev"].shape == (10,)
    assert isinstance(status["pop_best"], Solution) and isinstance(status["best"], Solution)
    assert status["pop_best"].evaluation == status["pop_best_eval"]
    assert status["best"].evaluation == status["best_eval"]
    evals = snes.population.evals[:, 0]
    better = min if sense == "min" else max
    worse = max if sense == "min" else min
    assert status["pop_best_eval"] == better(evals.tolist())
    assert status["worst_eval"] == worse(evals.tolist())
    assert status["mean_eval"] == pytest.approx(float(evals.mean()))
    assert better(status["best_eval"], status["pop_best_eval"]) == status["best_eval"]


def test_best_is_kept_across_steps(make_problem: Callable[..., Problem]) -> None:
    ga = GeneticAlgorithm(make_problem(), popsize=10, mutation_stdev=5.0, num_elites=0)
    seen = []
    ga.after_step_hook.append(lambda: seen.append(ga.status["pop_best_eval"]))
    ga.run(5)
    assert ga.status["best_eval"] == min(seen)
    assert float((ga.status["best"].values ** 2).sum()) == pytest.approx(ga.status["best_eval"], rel=1e-5)


def test_status_tensors_are_copies(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    snes.status["center"].fill_(100.0)
    assert not torch.equal(snes.center, torch.full((10,), 100.0))


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_run_checks_the_number_of_generations(bad: Any, make_problem: Callable[..., Problem]) -> None:
    with pytest.raises(ValueError, match="num_generations must be an int >= 0"):
        SNES(make_problem(), stdev_init=1.0).run(bad)


def test_pandas_logger_collects_scalars_every_interval(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    logger = PandasLogger(snes, interval=2)
    snes.run(6)
    frame = logger.to_dataframe()
    assert frame.index.name == "iter" and frame.index.tolist() == [2, 4, 6]
    assert {"mean_eval", "median_eval", "pop_best_eval", "best_eval", "worst_eval"} <= set(frame.columns)
    assert not {"center", "stdev", "pop_best", "best"} & set(frame.columns)
    assert frame.loc[6, "best_eval"] == snes.status["best_eval"]
    assert "iter" in logger.to_dataframe(index=None).columns


def test_after_first_step_logs_step_one_then_every_interval(make_problem: Callable[..., Problem]) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    logger = PandasLogger(snes, interval=3, after_first_step=True)
    snes.run(7)
    assert logger.to_dataframe().index.tolist() == [1, 4, 7]


def test_stdout_logger_prints_aligned_blocks(
    make_problem: Callable[..., Problem], capsys: pytest.CaptureFixture[str]
) -> None:
    snes = SNES(make_problem(), stdev_init=1.0)
    StdOutLogger(snes, interval=2)
    snes.run(4)
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert len(blocks) == 2
    lines = blocks[1].splitlines()
    assert lines[0].split(":")[0].strip() == "iter" and lines[0].endswith(": 4")
    assert len({line.index(" : ") for line in lines}) == 1  # the colons line up
    text = blocks[1]
    assert "center : <tensor shape=(10,) norm=" in text
    assert "best : <solution eval=" in text
    assert "tensor([" not in text


def test_logger_interval_is_checked(make_problem: Callable[..., Problem]) -> None:
    with pytest.raises(ValueError, match="interval must be an int >= 1"):
        PandasLogger(SNES(make_problem(), stdev_init=1.0), interval=0)


def test_logger_subclasses_implement_log(make_problem: Callable[..., Problem]) -> None:
    class Collect(Logger):
        def __init__(self, searcher: SearchAlgorithm) -> None:
            super().__init__(searcher, interval=2)
            self.steps: list[int] = []

        def _log(self, status: dict[str, Any]) -> None:
            self.steps.append(status["iter"])

    snes = SNES(make_problem(), stdev_init=1.0)
    logger = Collect(snes)
    snes.run(5)
    assert logger.steps == [2, 4]
