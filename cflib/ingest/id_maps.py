"""The id-map step: dense user and item indices from the shards' id sets, the side
tables joined to them, the probe's pair keys, the qualifying table, and how many
buckets each split is written in.

Dense indices follow ascending raw ids, so the maps are the same whatever the sharding
or the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from cflib import schema
from cflib.ingest import hashing, quarantine
from cflib.ingest.ids import DenseIds, sorted_unique, union_sorted
from cflib.ingest.parse import ParsedShard
from cflib.ingest.plan import load_plan
from cflib.ingest.scratch import ROW_GROUP_ROWS
from cflib.sources import netflix
from cflib.sources.accounting import Report


class Buckets(BaseModel):
    """How many hash buckets (one Parquet part each) every split is written in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: int = Field(gt=0)
    validation: int = Field(gt=0)
    test: int = Field(gt=0)
    # Temporal splits first gather each user's ratings in one of these.
    users: int = Field(gt=0, description="User buckets of a temporal split's first round.")

    def of(self, split: str) -> int:
        """The buckets of ``split`` (one of ``schema.SPLITS``, or ``users``)."""
        count: int = getattr(self, split)
        return count

    def jobs(self) -> list[tuple[str, int]]:
        """Every (split, bucket) pair to compact."""
        return [(s, b) for s in schema.SPLITS for b in range(self.of(s))]


class IdMaps(BaseModel):
    """What ``build_id_maps`` found, for the steps after it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_users: int
    n_items: int
    rows: int
    probe_pairs: int
    qualifying_rows: int
    buckets: Buckets


def _n_buckets(rows: int, bucket_rows: int) -> int:
    return max(1, math.ceil(rows / bucket_rows))


def build_id_maps(stage: str, parsed: Sequence[ParsedShard]) -> IdMaps:
    """Dense id maps from the shards' id sets, plus probe keys and the qualifying table."""
    plan = load_plan(stage)
    root, layout = plan.stage_path, plan.layout
    sets = [np.load(layout.raw_ids(shard.index)) for shard in parsed]
    users = union_sorted(s["users"] for s in sets)
    items = union_sorted(s["items"] for s in sets)
    np.save(layout.users, users)
    np.save(layout.items, items)
    report = Report(strict=plan.config.strict)
    source = plan.source_variant
    user_side = None if plan.users is None else source.read_users(Path(plan.users), report)
    item_side = None if plan.items is None else source.read_items(Path(plan.items), report)
    user_map = _side_map(users, "raw_user", user_side, schema.USER_MAP)
    pq.write_table(user_map, root / schema.USER_MAP_FILE)
    pq.write_table(
        _side_map(items, "raw_item", item_side, schema.ITEM_MAP), root / schema.ITEM_MAP_FILE
    )

    probe_pairs = 0
    if plan.split == "probe" and plan.probe is not None:
        probe = netflix.read_probe(Path(plan.probe), report)
        keys = sorted_unique(
            hashing.pair_keys(
                probe.column("raw_item").to_numpy(), probe.column("raw_user").to_numpy()
            )
        )
        probe_pairs = int(keys.size)
        np.save(layout.probe_keys, keys)
    qualifying_rows = 0
    if plan.qualifying is not None:
        qualifying_rows = _write_qualifying(Path(plan.qualifying), users, items, root, report)
    quarantine.save_report(report, *layout.side_report())

    rows = sum(shard.rows for shard in parsed)
    test_est = probe_pairs if plan.split == "probe" else rows * plan.config.test_fraction
    val_est = (rows - test_est) * plan.config.validation_fraction
    bucket_rows = plan.config.bucket_rows
    return IdMaps(
        n_users=int(users.size),
        n_items=int(items.size),
        rows=rows,
        probe_pairs=probe_pairs,
        qualifying_rows=qualifying_rows,
        buckets=Buckets(
            train=_n_buckets(int(rows - test_est - val_est), bucket_rows),
            validation=_n_buckets(int(val_est), bucket_rows),
            test=_n_buckets(int(test_est), bucket_rows),
            users=_n_buckets(rows, bucket_rows),
        ),
    )


def _side_map(ids: np.ndarray, key: str, side: pa.Table | None, target: pa.Schema) -> pa.Table:
    """One row per dense id, in dense order, with the side table's features for it.

    Ids the side table lacks get nulls (empty genre lists); side rows for ids without
    ratings are dropped.
    """
    n = ids.size
    columns: dict[str, pa.Array] = {key: pa.array(ids, pa.int64())}
    if side is None:
        for field in target:
            if field.name != key:
                columns[field.name] = _missing(field.type, n)
        return pa.table(columns, schema=target)
    idx = DenseIds(ids)(side.column(key).to_numpy())
    keep = idx >= 0
    row = np.full(n, -1, np.int64)  # The side table's row of each dense id, or -1.
    row[idx[keep]] = np.nonzero(keep)[0]
    take = pa.array(np.where(row >= 0, row, 0))
    missing = pa.array(row < 0)
    for field in target:
        if field.name == key:
            continue
        fill = pa.scalar([] if pa.types.is_list(field.type) else None, field.type)
        column = (
            side.column(field.name).take(take) if n and side.num_rows else _missing(field.type, n)
        )
        columns[field.name] = pa.compute.if_else(missing, fill, column)
    return pa.table(columns, schema=target)


def _missing(dtype: pa.DataType, n: int) -> pa.Array:
    """``n`` values of ``dtype`` standing for 'unknown': empty lists, else nulls."""
    if pa.types.is_list(dtype):
        return pa.array([[]] * n, dtype)
    return pa.nulls(n, dtype)


def _write_qualifying(
    path: Path, users: np.ndarray, items: np.ndarray, root: Path, report: Report
) -> int:
    table = netflix.read_qualifying(path, report)
    user = DenseIds(users)(table.column("raw_user").to_numpy())
    item = DenseIds(items)(table.column("raw_item").to_numpy())
    # Keep the file's order: the Prize submission format lists predictions in it.
    out = pa.table(
        {
            "user": pa.array(user, mask=user < 0),
            "item": pa.array(item, mask=item < 0),
            "date": table.column("date"),
            "raw_user": table.column("raw_user"),
            "raw_item": table.column("raw_item"),
        }
    )
    pq.write_table(out, root / schema.QUALIFYING_FILE, row_group_size=ROW_GROUP_ROWS)
    return table.num_rows
