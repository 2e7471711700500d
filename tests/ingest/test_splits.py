"""Split hashing: deterministic, independent of batching, close to the asked fractions."""

from __future__ import annotations

import numpy as np

from cflib.ingest import hashing as splits


def test_uniform_is_deterministic_and_batch_independent() -> None:
    keys = splits.pair_keys(np.arange(1000) % 37, np.arange(1000) * 7919)
    whole = splits.uniform01(keys, seed=3, salt=splits.SALT_TEST)
    parts = np.concatenate([splits.uniform01(k, 3, splits.SALT_TEST) for k in np.split(keys, 8)])
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, splits.uniform01(keys, 4, splits.SALT_TEST))
    assert ((whole >= 0) & (whole < 1)).all()


def test_fractions_and_buckets_are_balanced() -> None:
    rng = np.random.default_rng(0)
    keys = splits.pair_keys(rng.integers(1, 17_771, 200_000), rng.integers(1, 2_649_430, 200_000))
    share = (splits.uniform01(keys, 0, splits.SALT_VALIDATION) < 0.1).mean()
    assert abs(share - 0.1) < 0.005
    counts = np.bincount(splits.buckets(keys, 0, 5), minlength=5)
    assert counts.min() > 0.19 * keys.size and counts.max() < 0.21 * keys.size


def test_pair_keys_pack_item_high_user_low() -> None:
    keys = splits.pair_keys(np.array([1, 17_770]), np.array([2_649_429, 6]))
    assert keys.tolist() == [(1 << 32) | 2_649_429, (17_770 << 32) | 6]


def test_sorted_member() -> None:
    found = splits.sorted_member(np.array([5, 1, 9, 12], np.uint64), np.array([1, 9], np.uint64))
    assert found.tolist() == [False, True, True, False]
    assert not splits.sorted_member(np.array([1], np.uint64), np.array([], np.uint64)).any()
