"""Tests of RunningStat: updates, exact merges, MPI packing and normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpcne.neuroevolution.net import ObsNormLayer, RunningStat


@pytest.fixture
def data() -> np.ndarray:
    """Returns 50 observations of length 3 with distinct means and scales."""
    rng = np.random.default_rng(0)
    return rng.normal(loc=[0.0, 5.0, -2.0], scale=[1.0, 3.0, 0.01], size=(50, 3))


def test_new_stat_is_empty() -> None:
    stat = RunningStat()
    assert stat.count == 0
    assert stat.shape is None
    assert stat.sum is None
    assert stat.sum_of_squares is None


def test_shape_given_gives_zero_sums() -> None:
    stat = RunningStat(3)
    assert stat.shape == (3,)
    np.testing.assert_array_equal(stat.sum, np.zeros(3))
    np.testing.assert_array_equal(stat.sum_of_squares, np.zeros(3))
    assert stat.sum.dtype == np.float64


def test_mean_and_stdev_match_numpy(data: np.ndarray) -> None:
    stat = RunningStat()
    stat.update(data)
    assert stat.count == 50
    assert isinstance(stat.count, int)
    np.testing.assert_allclose(stat.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stat.stdev[:2], data.std(axis=0)[:2], rtol=1e-9)


def test_stdev_floor() -> None:
    stat = RunningStat()
    stat.update(np.full((10, 2), 7.0))
    np.testing.assert_allclose(stat.stdev, [0.1, 0.1])


def test_batch_update_equals_one_by_one(data: np.ndarray) -> None:
    batched, single = RunningStat(), RunningStat()
    batched.update(data)
    for row in data:
        single.update(row)
    assert batched.count == single.count
    np.testing.assert_allclose(batched.sum, single.sum, rtol=1e-12)
    np.testing.assert_allclose(batched.sum_of_squares, single.sum_of_squares, rtol=1e-12)


def test_tensor_and_list_updates() -> None:
    stat = RunningStat()
    stat.update(torch.tensor([1.0, 2.0]))
    stat.update([3.0, 4.0])
    np.testing.assert_array_equal(stat.mean, [2.0, 3.0])


def test_merge_equals_stats_of_concatenation(data: np.ndarray) -> None:
    first, second, whole = RunningStat(), RunningStat(), RunningStat()
    first.update(data[:20])
    second.update(data[20:])
    whole.update(data)
    first.update(second)
    assert first.count == whole.count
    np.testing.assert_allclose(first.mean, whole.mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(first.stdev, whole.stdev, rtol=0, atol=1e-12)
    assert second.count == 30


def test_merge_into_empty_and_from_empty(data: np.ndarray) -> None:
    source, target = RunningStat(), RunningStat()
    source.update(data)
    target.update(source)
    np.testing.assert_array_equal(target.sum, source.sum)
    target.update(RunningStat())
    target.update(RunningStat(7))
    assert target.count == 50


def test_merge_does_not_alias_arrays(data: np.ndarray) -> None:
    source, target = RunningStat(), RunningStat()
    source.update(data)
    target.update(source)
    target.update(data)
    np.testing.assert_allclose(source.sum, data.sum(axis=0))


def test_shape_mismatch_errors() -> None:
    stat = RunningStat(3)
    with pytest.raises(ValueError, match=r"shape \(3,\).*found shape \(4,\)"):
        stat.update(np.zeros(4))
    other = RunningStat()
    other.update(np.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(3,\), but found shape \(2,\)"):
        stat.update(other)
    with pytest.raises(ValueError, match="1-D observation"):
        RunningStat().update(np.zeros((2, 2, 2)))


def test_multidimensional_observations() -> None:
    stat = RunningStat((2, 2))
    stat.update(np.ones((2, 2)))
    stat.update(np.zeros((3, 2, 2)))
    assert stat.count == 4
    np.testing.assert_allclose(stat.mean, np.full((2, 2), 0.25))


def test_normalize(data: np.ndarray) -> None:
    stat = RunningStat()
    stat.update(data)
    result = stat.normalize(data)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, (data - stat.mean) / stat.stdev, rtol=1e-5, atol=1e-5)
    tensor_result = stat.normalize(torch.as_tensor(data, dtype=torch.float64))
    assert isinstance(tensor_result, torch.Tensor)
    np.testing.assert_allclose(tensor_result.numpy(), (data - stat.mean) / stat.stdev, rtol=1e-12)


def test_normalize_with_count_zero_returns_input() -> None:
    x = torch.tensor([1.0, -2.0])
    assert RunningStat().normalize(x) is x
    result = RunningStat().normalize([1.0, -2.0])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [1.0, -2.0])


def test_empty_stat_with_shape_has_identity_normalization() -> None:
    stat = RunningStat(2)
    np.testing.assert_array_equal(stat.mean, [0.0, 0.0])
    np.testing.assert_array_equal(stat.stdev, [1.0, 1.0])
    with pytest.raises(ValueError, match="no shape"):
        _ = RunningStat().mean


def test_pack_unpack_round_trip_is_exact(data: np.ndarray) -> None:
    stat = RunningStat()
    stat.update(data)
    packed = stat.pack()
    assert packed.dtype == np.float64
    assert packed.shape == (RunningStat.packed_size(3),) == (7,)
    assert packed[0] == 50
    restored = RunningStat.unpack(packed, 3)
    assert restored.count == 50
    np.testing.assert_array_equal(restored.sum, stat.sum)
    np.testing.assert_array_equal(restored.sum_of_squares, stat.sum_of_squares)
    packed[1] = 1e9
    assert restored.sum[0] != 1e9


def test_summed_packs_equal_merge(data: np.ndarray) -> None:
    first, second = RunningStat(), RunningStat()
    first.update(data[:10])
    second.update(data[10:])
    reduced = RunningStat.unpack(first.pack() + second.pack(), 3)
    first.update(second)
    assert reduced.count == first.count
    np.testing.assert_allclose(reduced.sum, first.sum, rtol=1e-15)


def test_pack_needs_shape_and_unpack_checks() -> None:
    with pytest.raises(ValueError, match="no shape"):
        RunningStat().pack()
    with pytest.raises(ValueError, match="length 7"):
        RunningStat.unpack(np.zeros(6), 3)
    with pytest.raises(ValueError, match="exact integer count"):
        RunningStat.unpack(np.array([1.5, 0, 0]), 1)
    with pytest.raises(ValueError, match="exact integer count"):
        RunningStat.unpack(np.array([2.0**53, 0, 0]), 1)


def test_reset_keeps_shape_and_copy_is_independent(data: np.ndarray) -> None:
    stat = RunningStat()
    stat.update(data)
    clone = stat.copy()
    stat.reset()
    assert stat.count == 0
    assert stat.shape == (3,)
    np.testing.assert_array_equal(stat.sum, np.zeros(3))
    assert clone.count == 50
    assert repr(clone) == "RunningStat(shape=(3,), count=50)"


def test_to_layer_matches_normalize(data: np.ndarray) -> None:
    stat = RunningStat()
    stat.update(data)
    layer = stat.to_layer()
    assert isinstance(layer, ObsNormLayer)
    x = torch.as_tensor(data, dtype=torch.float32)
    np.testing.assert_allclose(layer(x).numpy(), stat.normalize(data), rtol=1e-5, atol=1e-5)
    assert len(list(layer.parameters())) == 0
    assert len(list(stat.to_layer(trainable_stats=True).parameters())) == 2
