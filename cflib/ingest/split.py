"""The split step: assigning ratings to the train, validation and test splits, and to
shuffle buckets. The seeded hashes it draws from are ``cflib.ingest.hashing``.

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

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from cflib import schema
from cflib.ingest import hashing
from cflib.ingest.compact import concat_pieces
from cflib.ingest.id_maps import Buckets, IdMaps
from cflib.ingest.ids import DenseIds
from cflib.ingest.plan import Plan, load_plan
from cflib.ingest.scratch import BY_USER, ScratchLayout, read_scratch, write_scratch


class SplitDone(BaseModel):
    """What one split job wrote: its shard (or user bucket) and its rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    rows: int


def split_shard(stage: str, index: int, ids: IdMaps) -> SplitDone:
    """Assign one parsed shard's ratings to splits and buckets, writing one piece per
    bucket (or, for a temporal split, per user bucket)."""
    plan = load_plan(stage)
    layout = plan.layout
    table = read_scratch(layout.raw_table(index))
    raw_user = table.column("raw_user").to_numpy()
    raw_item = table.column("raw_item").to_numpy()
    dense = pa.table(
        {
            "user": DenseIds(np.load(layout.users))(raw_user),
            "item": DenseIds(np.load(layout.items))(raw_item),
            "rating": table.column("rating"),
            "date": table.column("date"),
            "raw_user": raw_user,
            "raw_item": raw_item,
        },
        schema=schema.RATINGS,
    )
    keys = hashing.pair_keys(raw_item, raw_user)
    name = layout.shard_piece(index)
    if plan.split == "temporal":
        user_keys = raw_user.astype(np.uint64)
        groups = hashing.buckets(user_keys, plan.config.seed, ids.buckets.users)
        _scatter(layout, dense, groups, ids.buckets.users, BY_USER, name)
        return SplitDone(index=index, rows=dense.num_rows)
    cfg = plan.config
    if plan.split == "probe":
        test = hashing.sorted_member(keys, np.load(layout.probe_keys))
    else:
        test = hashing.uniform01(keys, cfg.seed, hashing.SALT_TEST) < cfg.test_fraction
    draw = hashing.uniform01(keys, cfg.seed, hashing.SALT_VALIDATION)
    val = ~test & (draw < cfg.validation_fraction)
    _write_splits(plan, dense, keys, test, val, ids.buckets, name)
    return SplitDone(index=index, rows=dense.num_rows)


def assign_temporal(stage: str, user_bucket: int, ids: IdMaps) -> SplitDone:
    """Split the ratings of one user bucket by time: each user's latest go to test."""
    plan = load_plan(stage)
    cfg = plan.config
    layout = plan.layout
    pieces = layout.bucket_pieces(BY_USER, user_bucket, "shard-*.arrow")
    if not pieces:
        return SplitDone(index=user_bucket, rows=0)
    # All of a user's ratings are in this bucket.
    table = concat_pieces(plan, pieces, layout.repeats("users", user_bucket))
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
    name = layout.user_bucket_piece(user_bucket)
    _write_splits(plan, table, keys, test, val, ids.buckets, name)
    return SplitDone(index=user_bucket, rows=table.num_rows)


def _write_splits(
    plan: Plan,
    dense: pa.Table,
    keys: np.ndarray,
    test: np.ndarray,
    val: np.ndarray,
    buckets: Buckets,
    name: str,
) -> None:
    """Write the rows of each split into that split's hash buckets."""
    for split, mask in (("train", ~test & ~val), ("validation", val), ("test", test)):
        rows = np.nonzero(mask)[0]
        if rows.size:
            n_buckets = buckets.of(split)
            groups = hashing.buckets(keys[rows], plan.config.seed, n_buckets)
            _scatter(plan.layout, dense.take(pa.array(rows)), groups, n_buckets, split, name)


def _scatter(
    layout: ScratchLayout,
    table: pa.Table,
    groups: np.ndarray,
    n_groups: int,
    kind: str,
    name: str,
) -> None:
    """Write the rows of each group g to ``pieces/<kind>/b<g>/<name>``, in table order."""
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = order[bounds[g] : bounds[g + 1]]
        if rows.size:
            where = layout.bucket_dir(kind, g)
            where.mkdir(parents=True, exist_ok=True)
            write_scratch(table.take(pa.array(rows)), where / name)
