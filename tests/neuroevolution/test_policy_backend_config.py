"""`policy_backend` from a run configuration and the command line down to GymNE."""

from __future__ import annotations

import pytest

from hpcne.cli import _config_from_args, _parser
from hpcne.config import ConfigError, RunConfig
from hpcne.neuroevolution.policies import ModuleLoop, TorchMLP
from hpcne.run import build_problem


def test_the_config_key_reaches_the_problem_and_its_policies() -> None:
    assert RunConfig().policy_backend == "auto"
    config = RunConfig.from_dict(
        {"env": "CartPole-v1", "policy_backend": "torch", "rollout_batch_size": 3, "workers": 1}
    )
    problem = build_problem(config)
    problem.evaluate(problem.generate_batch(5))
    assert isinstance(problem._policy_cache[3], TorchMLP)


def test_a_bad_config_value_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="policy_backend must be one of auto, numpy, torch, vmap, loop; got 'gpu'"):
        RunConfig.from_dict({"policy_backend": "gpu"})


def test_the_command_line_flag() -> None:
    args = _parser().parse_args(
        ["train", "--env", "CartPole-v1", "--workers", "1", "--policy-backend", "loop", "--rollout-batch-size", "2"]
    )
    config = _config_from_args(args, {})
    assert config.policy_backend == "loop"
    problem = build_problem(config)
    problem.evaluate(problem.generate_batch(3))
    assert isinstance(problem._policy_cache[2], ModuleLoop)
    with pytest.raises(ConfigError, match="policy_backend must be one of"):
        _config_from_args(_parser().parse_args(["train", "--policy-backend", "fast"]), {})
