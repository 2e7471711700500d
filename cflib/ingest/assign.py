"""Assigning ratings to the train, validation and test splits, and to shuffle buckets.

Three ways to choose the test split (``Plan.split``):

* ``probe``: the (item, user) pairs listed in Netflix's probe.txt.
* ``random``: a seeded hash of the (item, user) pair below ``test_fraction``; stable
  under re-sharding and across machines.
* ``temporal``: per user, the latest ``floor(test_fraction * n)`` of their ``n``
  ratings (ties on the date broken by the pair's hash). Each shard first scatters its
  rows by a hash of the user, so that one task later sees all of a user's ratings.

Validation is carved from what is left the same way (hash, or a user's latest).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from cflib import schema
from cflib.ingest import quarantine
from cflib.ingest import splits as hashing
from cflib.ingest.ids import DenseIds
from cflib.ingest.steps import (
    SCRATCH,
    Plan,
    concat_pieces,
    load_plan,
    read_scratch,
    write_scratch,
)

_BY_USER = "by-user"


def split_shard(stage: str, index: int, ids: dict[str, Any]) -> dict[str, Any]:
    """Assign one parsed shard's ratings to splits and buckets, writing one piece per
    bucket (or, for a temporal split, per user bucket)."""
    plan = load_plan(stage)
    scratch = plan.stage_path / SCRATCH
    table = read_scratch(scratch / "raw" / f"shard-{index:05d}.arrow")
    raw_user = table.column("raw_user").to_numpy()
    raw_item = table.column("raw_item").to_numpy()
    dense = pa.table(
        {
            "user": DenseIds(np.load(scratch / "users.npy"))(raw_user),
            "item": DenseIds(np.load(scratch / "items.npy"))(raw_item),
            "rating": table.column("rating"),
            "date": table.column("date"),
            "raw_user": raw_user,
            "raw_item": raw_item,
        },
        schema=schema.RATINGS,
    )
    keys = hashing.pair_keys(raw_item, raw_user)
    name = f"shard-{index:05d}.arrow"
    if plan.split == "temporal":
        user_keys = raw_user.astype(np.uint64)
        groups = hashing.buckets(user_keys, plan.config.seed, ids["buckets"]["users"])
        _scatter(plan, dense, groups, ids["buckets"]["users"], _BY_USER, name)
        return {"index": index, "rows": dense.num_rows}
    cfg = plan.config
    if plan.split == "probe":
        test = hashing.sorted_member(keys, np.load(scratch / "probe_keys.npy"))
    else:
        test = hashing.uniform01(keys, cfg.seed, hashing.SALT_TEST) < cfg.test_fraction
    draw = hashing.uniform01(keys, cfg.seed, hashing.SALT_VALIDATION)
    val = ~test & (draw < cfg.validation_fraction)
    _write_splits(plan, dense, keys, test, val, ids, name)
    return {"index": index, "rows": dense.num_rows}


def assign_temporal(stage: str, user_bucket: int, ids: dict[str, Any]) -> dict[str, Any]:
    """Split the ratings of one user bucket by time: each user's latest go to test."""
    plan = load_plan(stage)
    cfg = plan.config
    where = plan.stage_path / SCRATCH / "pieces" / _BY_USER / f"b{user_bucket:05d}"
    pieces = sorted(where.glob("shard-*.arrow")) if where.is_dir() else []
    if not pieces:
        return {"bucket": user_bucket, "rows": 0}
    # All of a user's ratings are in this bucket.
    repeats = plan.stage_path / SCRATCH / quarantine.REPEATS / f"users-b{user_bucket:05d}.parquet"
    table = concat_pieces(plan, pieces, repeats)
    user = table.column("user").to_numpy()
    day = table.column("date").cast(pa.int32()).to_numpy()
    keys = hashing.pair_keys(
        table.column("raw_item").to_numpy(), table.column("raw_user").to_numpy()
    )
    tie = hashing.hash_keys(keys, cfg.seed, hashing.SALT_TEST)
    order = np.lexsort((tie, day, user))  # By user, then date, then hash.
    sorted_user = user[order]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    counts = np.diff(np.r_[starts, sorted_user.size])
    n = np.repeat(counts, counts)  # Ratings of the row's user.
    from_end = n - 1 - (np.arange(sorted_user.size) - np.repeat(starts, counts))
    n_test = np.floor(cfg.test_fraction * n)
    n_val = np.floor(cfg.validation_fraction * (n - n_test))
    test = np.empty(user.size, dtype=bool)
    val = np.empty(user.size, dtype=bool)
    test[order] = from_end < n_test
    val[order] = ~test[order] & (from_end < n_test + n_val)
    _write_splits(plan, table, keys, test, val, ids, f"users-{user_bucket:05d}.arrow")
    return {"bucket": user_bucket, "rows": table.num_rows}


def _write_splits(
    plan: Plan,
    dense: pa.Table,
    keys: np.ndarray,
    test: np.ndarray,
    val: np.ndarray,
    ids: dict[str, Any],
    name: str,
) -> None:
    """Write the rows of each split into that split's hash buckets."""
    for split, mask in (("train", ~test & ~val), ("validation", val), ("test", test)):
        rows = np.nonzero(mask)[0]
        if rows.size:
            n_buckets = ids["buckets"][split]
            groups = hashing.buckets(keys[rows], plan.config.seed, n_buckets)
            _scatter(plan, dense.take(pa.array(rows)), groups, n_buckets, split, name)


def _scatter(
    plan: Plan, table: pa.Table, groups: np.ndarray, n_groups: int, kind: str, name: str
) -> None:
    """Write the rows of each group g to ``pieces/<kind>/b<g>/<name>``, in table order."""
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = order[bounds[g] : bounds[g + 1]]
        if rows.size:
            where = plan.stage_path / SCRATCH / "pieces" / kind / f"b{g:05d}"
            where.mkdir(parents=True, exist_ok=True)
            write_scratch(table.take(pa.array(rows)), where / name)
