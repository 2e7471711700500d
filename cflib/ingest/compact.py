"""The compaction step: one bucket's pieces, each (user, item) pair once, shuffled into
one Parquet part of the dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from cflib import schema
from cflib.ingest import quarantine
from cflib.ingest.plan import Plan, load_plan
from cflib.ingest.scratch import ROW_GROUP_ROWS, read_scratch

# Parquet's encoding of the parts: dictionaries pay off for the few distinct ratings and
# dates, not for the ids.
DICTIONARY_COLUMNS = ["rating", "date"]


class Part(BaseModel):
    """One bucket's part of a split: its file (None when the bucket is empty), its rows
    and the sum of their ratings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: str
    bucket: int
    file: str | None
    rows: int
    rating_sum: float
    rating_min: float | None = None  # None: no rows
    rating_max: float | None = None


def concat_pieces(plan: Plan, pieces: list[Path], record: Path) -> pa.Table:
    """The rows of ``shard-NNNNN.arrow`` pieces in shard order, each (user, item) pair once.

    Later copies of a pair are dropped and recorded in ``record`` for the quarantine
    (with ``--strict`` the first one raises ``DataFormatError`` naming both lines).
    """
    tables = [read_scratch(p) for p in pieces]
    table = pa.concat_tables(tables)
    return quarantine.drop_repeats(
        table,
        quarantine.shard_of_rows(pieces, [t.num_rows for t in tables]),
        variant=plan.source_variant,
        plan_shards=plan.shards,
        strict=plan.config.strict,
        record=record,
    )


def compact_bucket(stage: str, split: str, bucket: int) -> Part:
    """Merge one bucket's pieces into a shuffled part ``ratings/split=S/part-NNNNN.parquet``."""
    plan = load_plan(stage)
    layout = plan.layout
    pieces = layout.bucket_pieces(split, bucket)
    if not pieces:
        return Part(split=split, bucket=bucket, file=None, rows=0, rating_sum=0.0)
    if plan.split == "temporal":  # repeats were dropped per user bucket, before the split
        table = pa.concat_tables(read_scratch(p) for p in pieces)
    else:  # a pair's copies share a split and a bucket
        table = concat_pieces(plan, pieces, layout.repeats(split, bucket))
    salt = schema.SPLITS.index(split)
    rng = np.random.default_rng([plan.config.seed, salt, bucket])
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    rel = layout.part(split, bucket)
    target = plan.stage_path / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, row_group_size=ROW_GROUP_ROWS, use_dictionary=DICTIONARY_COLUMNS)
    ratings = table.column("rating").cast(pa.float64())
    low, high = pa.compute.min_max(ratings).values()
    return Part(
        split=split,
        bucket=bucket,
        file=rel,
        rows=table.num_rows,
        rating_sum=float(pa.compute.sum(ratings).as_py()),
        rating_min=low.as_py(),
        rating_max=high.as_py(),
    )
