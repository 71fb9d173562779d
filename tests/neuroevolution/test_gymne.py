"""GymNE's API: constructor arguments, validation, run/visualize, policies, statistics, saving."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from gymnasium import spaces
from ne_envs import ConstantRewardEnv, EchoEnv, SpaceEnv
from PIL import Image
from torch import nn

from hpcne.neuroevolution import GymNE
from hpcne.neuroevolution.net import ActClipLayer, ObsNormLayer, RunningStat

CARTPOLE_NET = "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)"


def cartpole(**kwargs) -> GymNE:
    return GymNE("CartPole-v1", CARTPOLE_NET, **{"num_actors": None, "seed": 0, **kwargs})


# ------------------------------------------------------------------------------------ construction
def test_env_by_id_alias_and_factory_with_env_config() -> None:
    by_name = GymNE(env_name="CartPole-v1", network=CARTPOLE_NET, num_actors=None)
    assert (by_name.env_id, by_name.solution_length) == ("CartPole-v1", 4 * 8 + 8 + 8 * 2 + 2)
    problem = GymNE(ConstantRewardEnv, "Linear(obs_length, act_length)", env_config={"horizon": 3}, num_actors=None)
    assert problem.get_env().horizon == 3
    assert problem.get_env() is problem.get_env()
    assert problem.run(torch.zeros(problem.solution_length))["interaction_count"] == 3


def test_defaults_and_stored_options() -> None:
    problem = GymNE(
        "CartPole-v1",
        CARTPOLE_NET,
        actor_config={"num_threads": 1},
        num_subbatches=4,
        initial_bounds=(-0.5, 0.5),
        seed=11,
    )
    assert problem.num_actors == "max"  # GymNE parallelises by default (nothing starts before evaluate)
    assert (problem.actor_config, problem.num_subbatches, problem.seed) == ({"num_threads": 1}, 4, 11)
    assert problem.objective_sense == "max"
    values = problem.generate_batch(10).values
    assert values.abs().max() <= 0.5 and values.abs().max() > 1e-3


def test_network_constants() -> None:
    seen = {}

    def network(obs_length, act_length, obs_space, act_space, obs_shape, act_shape) -> nn.Module:
        seen.update(obs_length=obs_length, act_length=act_length, obs_space=obs_space, act_space=act_space)
        seen.update(obs_shape=obs_shape, act_shape=act_shape)
        return nn.Linear(obs_length, act_length)

    pendulum = GymNE("Pendulum-v1", network, num_actors=None)
    assert (seen["obs_length"], seen["act_length"], seen["obs_shape"], seen["act_shape"]) == (3, 1, (3,), (1,))
    assert seen["obs_space"] == pendulum.get_env().observation_space
    assert seen["act_space"] == pendulum.get_env().action_space
    GymNE("CartPole-v1", network, num_actors=None)
    # As in EvoTorch, a Discrete(n) action space is offered to networks as a Box of n scores.
    assert (seen["act_length"], seen["act_shape"]) == (2, (2,))
    assert isinstance(seen["act_space"], spaces.Box) and seen["act_space"].shape == (2,)
    # In network strings the spaces are their shapes (EvoTorch's string constants).
    problem = GymNE("CartPole-v1", "Linear(obs_space[0], act_space[0])", num_actors=None)
    assert (problem.network.in_features, problem.network.out_features) == (4, 2)


# -------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("observation_space", "action_space", "match"),
    [
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2), "Box observation space"),
        (spaces.Discrete(5), spaces.Discrete(2), "Box observation space"),
        (spaces.Box(-1, 1, (2,)), spaces.MultiDiscrete([2, 3]), "Discrete or Box action space"),
        (spaces.Box(-1, 1, (2,)), spaces.Dict({"a": spaces.Discrete(2)}), "Discrete or Box action space"),
    ],
)
def test_unsupported_spaces_are_refused(observation_space, action_space, match) -> None:
    with pytest.raises(TypeError, match=match):
        GymNE(lambda: SpaceEnv(observation_space, action_space), "Linear(2, 2)", num_actors=None)


def test_unknown_env_and_mismatched_networks_are_refused() -> None:
    with pytest.raises(ValueError, match="Could not create the environment 'NoSuchEnv-v0'"):
        GymNE("NoSuchEnv-v0", "Linear(obs_length, act_length)", num_actors=None)
    with pytest.raises(ValueError, match=r"to 3 outputs, but the action space .* needs 2"):
        GymNE("CartPole-v1", "Linear(obs_length, 3)", num_actors=None)
    with pytest.raises(ValueError, match="cannot take an observation of length obs_length=4"):
        GymNE("CartPole-v1", "Linear(5, act_length)", num_actors=None)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"env_name": "CartPole-v1"}, ValueError, "either env or env_name"),
        ({"num_episodes": 0}, ValueError, "num_episodes"),
        ({"episode_length": -1}, ValueError, "episode_length"),
        ({"rollout_batch_size": 0}, ValueError, "rollout_batch_size"),
        ({"rollout_batch_size": True}, ValueError, "rollout_batch_size"),
        ({"action_noise_stdev": -0.1}, ValueError, "action_noise_stdev"),
        ({"alive_bonus_schedule": (1,)}, ValueError, "alive_bonus_schedule"),
        ({"alive_bonus_schedule": (5, 2, 1.0)}, ValueError, "alive_bonus_schedule"),
        ({"num_subbatches": 2, "subbatch_size": 2}, ValueError, "cannot both be set"),
        ({"num_actors": -3}, ValueError, "num_actors"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        cartpole(**kwargs)


def test_missing_env_or_network_and_env_instances() -> None:
    with pytest.raises(ValueError, match="needs an environment"):
        GymNE(network=CARTPOLE_NET)
    with pytest.raises(ValueError, match="needs a network"):
        GymNE("CartPole-v1")
    with pytest.raises(TypeError, match="environment instance"):
        GymNE(ConstantRewardEnv(), "Linear(2, 2)")


# ------------------------------------------------------------------------------------- run, policies
def test_run_returns_mean_return_and_total_steps() -> None:
    problem = GymNE(ConstantRewardEnv, "Linear(obs_length, act_length)", num_actors=None, num_episodes=2)
    x = torch.zeros(problem.solution_length)
    assert problem.run(x) == {"cumulative_reward": 10.0, "interaction_count": 20}
    assert problem.run(x, num_episodes=3, decrease_rewards_by=0.5) == {
        "cumulative_reward": 5.0,
        "interaction_count": 30,
    }
    assert (problem.episode_count, problem.interaction_count) == (0, 0)  # update_stats=False counts nothing
    problem.run(problem.make_net(x), update_stats=True)
    assert (problem.episode_count, problem.interaction_count) == (2, 20)
    batch = problem.generate_batch(1)
    assert problem.run(batch[0])["interaction_count"] == 20  # a Solution is accepted too


def test_counters_and_status() -> None:
    problem = cartpole(episode_length=5)
    problem.evaluate(problem.generate_batch(3))
    assert (problem.episode_count, problem.interaction_count) == (3, 15)
    assert problem.status == {"total_interaction_count": 15, "total_episode_count": 3}
    problem.episode_count = 7
    problem.set_interaction_count(9)
    assert (problem.episode_count, problem.interaction_count) == (7, 9)
    problem.set_episode_count(1)
    problem.interaction_count = 2
    assert problem.status == {"total_interaction_count": 2, "total_episode_count": 1}


def test_to_policy_layers() -> None:
    problem = GymNE("Pendulum-v1", "Linear(obs_length, act_length)", observation_normalization=True, num_actors=None)
    x = torch.full((problem.solution_length,), 100.0)
    plain = problem.to_policy(x, clip_actions=False)
    assert isinstance(plain, nn.Linear)  # no statistics yet: no normalization layer
    clipped = problem.to_policy(x)
    assert isinstance(clipped[-1], ActClipLayer)
    assert float(clipped(torch.ones(3))) == 2.0  # Pendulum's torque limit
    problem.evaluate(problem.generate_batch(2))
    stats = problem.get_observation_stats()
    policy = problem.to_policy(x, trainable_stats=True)
    assert isinstance(policy[0], ObsNormLayer) and isinstance(policy[-1], ActClipLayer)
    assert sum(p.numel() for p in policy.parameters()) == problem.solution_length + 6  # mean and stdev
    obs = torch.tensor([0.5, -0.5, 1.0])
    expected = problem.make_net(x)((obs - torch.tensor(stats.mean).float()) / torch.tensor(stats.stdev).float())
    assert torch.allclose(problem.to_policy(x, clip_actions=False)(obs), expected)
    discrete = cartpole().to_policy(torch.zeros(58))
    assert not any(isinstance(m, (ActClipLayer, ObsNormLayer)) for m in discrete.modules())  # argmax: no clipping


def test_run_of_a_normalizing_policy_does_not_normalize_twice() -> None:
    problem = GymNE(EchoEnv, "Linear(obs_length, act_length)", observation_normalization=True, num_actors=None)
    problem.update_observation_stats(_stats([[1.0, 10.0], [3.0, 30.0]]))
    x = torch.tensor([1.0, 0.0, 0.0])  # output = first (normalised) observation value
    mean, stdev = problem.get_observation_stats().mean[0], problem.get_observation_stats().stdev[0]
    expected = sum((t - mean) / stdev for t in range(1, 6))
    assert problem.run(x)["cumulative_reward"] == pytest.approx(expected, rel=1e-6)
    assert problem.run(problem.to_policy(x))["cumulative_reward"] == pytest.approx(expected, rel=1e-6)


def _stats(rows: list[list[float]]) -> RunningStat:
    stats = RunningStat(2)
    stats.update(np.array(rows))
    return stats


def test_visualize_writes_a_gif_without_a_display(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    problem = GymNE(ConstantRewardEnv, "Linear(obs_length, act_length)", env_config={"horizon": 6}, num_actors=None)
    x = torch.zeros(problem.solution_length)
    result = problem.visualize(x)
    path = tmp_path / "ConstantRewardEnv-rollout.gif"
    assert result == {"cumulative_reward": 6.0, "interaction_count": 6, "path": path.name}
    assert str(path.name) in capsys.readouterr().out
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.is_animated and gif.n_frames == 7  # the reset frame and 6 steps
        gif.seek(6)
        assert gif.convert("RGB").getpixel((5, 5))[0] > 200  # the last frame shows the bar
    out = problem.run(x, visualize=True, num_episodes=2)  # run(visualize=True) does the same
    assert out["interaction_count"] == 12
    with Image.open(tmp_path / out["path"]) as gif:
        assert gif.n_frames == 14
    custom = problem.visualize(x, output=tmp_path / "sub.gif")
    assert custom["path"] == str(tmp_path / "sub.gif") and (tmp_path / "sub.gif").stat().st_size > 0


# ------------------------------------------------------------------------------------------ stats
def test_observation_statistics_api() -> None:
    problem = GymNE(EchoEnv, "Linear(obs_length, act_length)", observation_normalization=True, num_actors=None)
    assert problem.observation_normalization
    stats = problem.get_observation_stats()
    assert stats.count == 0 and stats.shape == (2,)
    problem.evaluate(problem.generate_batch(2))  # 2 episodes of 5 steps: 12 observations
    assert problem.get_observation_stats().count == 12
    assert problem.get_observation_stats().mean.tolist() == pytest.approx([3.5, 35.0])
    popped = problem.pop_observation_stats()
    assert popped.count == 12 and problem.pop_observation_stats().count == 0
    problem.update_observation_stats(_stats([[0.0, 0.0]]))
    assert problem.get_observation_stats().count == 13
    replacement = _stats([[1.0, 2.0], [3.0, 4.0]])
    problem.set_observation_stats(replacement)
    replacement.update(np.ones(2))  # the problem keeps a copy
    assert problem.get_observation_stats().count == 2
    with pytest.raises(ValueError, match="have 2 values"):
        problem.set_observation_stats(_stats3())


def _stats3() -> RunningStat:
    stats = RunningStat(3)
    stats.update(np.ones(3))
    return stats


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.get_observation_stats(),
        lambda p: p.set_observation_stats(RunningStat(4)),
        lambda p: p.update_observation_stats(RunningStat(4)),
        lambda p: p.pop_observation_stats(),
    ],
)
def test_statistics_need_observation_normalization(call) -> None:
    with pytest.raises(ValueError, match="observation_normalization=True"):
        call(cartpole())


def test_state_dict_round_trip() -> None:
    problem = cartpole(observation_normalization=True, episode_length=20)
    batch = problem.generate_batch(4)
    problem.evaluate(batch)
    state = problem.state_dict()
    problem.evaluate(batch)
    expected = batch.evals.clone()
    other = cartpole(observation_normalization=True, episode_length=20)
    other.load_state_dict(state)
    assert other.interaction_count == state["interaction_count"]
    other.evaluate(batch)
    assert torch.equal(batch.evals, expected)
    assert np.array_equal(other.get_observation_stats().pack(), problem.get_observation_stats().pack())


# ------------------------------------------------------------------------------------------ saving
def test_save_solution_writes_plain_hdf5(tmp_path) -> None:
    problem = cartpole(observation_normalization=True, episode_length=5)
    batch = problem.generate_batch(3)
    problem.evaluate(batch)
    path = problem.save_solution(batch[1], tmp_path / "best.h5")
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["values"][()], batch.values[1].numpy())
        assert np.array_equal(f["obs_stats"][()], problem.get_observation_stats().pack())
        assert np.allclose(f["obs_mean"][()], problem.get_observation_stats().mean)
        assert np.allclose(f["obs_stdev"][()], problem.get_observation_stats().stdev)
        assert all(f[name].dtype.kind == "f" for name in f)  # numbers only: nothing pickled
        assert f.attrs["env"] == "CartPole-v1" and f.attrs["network"] == CARTPOLE_NET
        assert (f.attrs["obs_length"], f.attrs["act_length"], f.attrs["interaction_count"]) == (4, 2, 15)
    plain = cartpole().save_solution(np.zeros(problem.solution_length), tmp_path / "zeros.h5")
    with h5py.File(plain, "r") as f:
        assert set(f) == {"values"}
    with pytest.raises(ValueError, match="values were given"):
        problem.save_solution(np.zeros(3), tmp_path / "bad.h5")
