"""Sorted id sets and raw -> dense lookups, through both lookup paths."""

from __future__ import annotations

import numpy as np
import pytest

from cflib.ingest import ids


def test_sorted_unique_and_union() -> None:
    assert ids.sorted_unique(np.array([5, 1, 5, 3, 1])).tolist() == [1, 3, 5]
    assert ids.sorted_unique(np.array([], np.int64)).tolist() == []
    got = ids.union_sorted([np.array([1, 4]), np.array([2, 4, 9]), np.array([], np.int64)])
    assert got.tolist() == [1, 2, 4, 9] and got.dtype == np.int64
    assert ids.union_sorted([]).tolist() == []


@pytest.mark.parametrize("big", [False, True])
def test_dense_ids_table_and_search_agree(big: bool) -> None:
    offset = (ids.LOOKUP_TABLE_MAX_ID + 1) if big else 0
    known = np.array([3, 10, 2_649_429]) + offset
    lookup = ids.DenseIds(known)
    assert (lookup.table is None) == big
    raw = np.array([10, 3, 2_649_429, 4, 0, 9_999_999]) + offset
    assert lookup(raw).tolist() == [1, 0, 2, -1, -1, -1]
    assert lookup(raw).dtype == np.int32


def test_dense_ids_unknown_and_empty() -> None:
    assert ids.DenseIds(np.array([5]))(np.array([-1, 6, 5])).tolist() == [-1, -1, 0]
    assert ids.DenseIds(np.array([], np.int64))(np.array([1, 2])).tolist() == [-1, -1]


def test_later_copies_and_their_rank_in_each_shard() -> None:
    from cflib.ingest import quarantine

    users = np.array([1, 2, 1, 3, 1, 2, 2**40, 2**40])
    items = np.array([5, 5, 5, 5, 5, 6, 7, 7])
    later = quarantine.later_copies(users, items)
    assert later.tolist() == [False, False, True, False, True, False, False, True]
    shards = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    # Copies of (1, 5): two in shard 0 (ranks 0, 1), one in shard 1 (rank 0).
    assert quarantine._ranks(users, items, shards).tolist() == [0, 0, 1, 0, 0, 0, 0, 1]
    assert not quarantine.later_copies(np.array([1]), np.array([1])).any()
