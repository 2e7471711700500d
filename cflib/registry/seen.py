"""``seen.parquet``: the (user, item) pairs each user rated, sorted by user.

``cfpipe recommend`` needs a user's rated items without the training data, so the
artifact carries the train and validation pairs as dense ``user``, ``item`` (int32),
sorted by user then item, in row groups with min/max statistics: reading one user
through a filter touches only the row groups whose user range holds that user.

It is built in two streaming passes with bounded memory (the full Netflix shape has
100M ratings): each Parquet part is read in record batches and scattered into
buckets of equal user ranges (Arrow IPC scratch files), then each bucket, about
``bucket_rows`` rows, is sorted alone and appended to the output in bucket order.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

SEEN = pa.schema([pa.field("user", pa.int32(), False), pa.field("item", pa.int32(), False)])
#: Rows sorted in memory at once (8 bytes each, the sort's index, the sorted copy).
BUCKET_ROWS = 1 << 22
#: Rows per row group: a one-user read decodes at most about this many rows.
ROW_GROUP_ROWS = 1 << 16
_READ_ROWS = 1 << 16


def _scatter(parts: Sequence[Path], scratch: Path, n_buckets: int, width: int) -> list[Path]:
    """Pass 1: append each batch's rows to the IPC file of its user range."""
    paths = [scratch / f"bucket-{k:05d}.arrow" for k in range(n_buckets)]
    writers: dict[int, ipc.RecordBatchFileWriter] = {}
    try:
        for part in parts:
            reader = pq.ParquetFile(part)
            for batch in reader.iter_batches(batch_size=_READ_ROWS, columns=["user", "item"]):
                user = batch.column(0).to_numpy().astype(np.int32, copy=False)
                item = batch.column(1).to_numpy().astype(np.int32, copy=False)
                bucket = user // width
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
                for k in np.flatnonzero(np.diff(bounds)).tolist():
                    rows = order[bounds[k] : bounds[k + 1]]
                    if k not in writers:
                        writers[k] = ipc.new_file(paths[k], SEEN)
                    writers[k].write_batch(pa.record_batch([user[rows], item[rows]], schema=SEEN))
    finally:
        for writer in writers.values():
            writer.close()
    return [paths[k] for k in sorted(writers)]


def write_seen(
    parts: Sequence[Path],
    n_users: int,
    out: Path,
    *,
    bucket_rows: int = BUCKET_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> int:
    """Write the pairs of ``parts`` to ``out``, sorted by (user, item), in bounded memory.

    Args:
        parts: Parquet files with int32 ``user`` and ``item`` columns (dense ids).
        n_users: number of dense users (ids ``0..n_users-1``).
        out: the Parquet file to write; scratch files go in a directory beside it.
        bucket_rows: target rows per sorted bucket (memory bound of the sort).
        row_group_rows: rows per row group of ``out``.

    Returns:
        The number of pairs written.
    """
    if bucket_rows <= 0 or row_group_rows <= 0 or n_users <= 0:
        raise ValueError(
            "`bucket_rows`, `row_group_rows` and `n_users` should be positive. Received: "
            f"{bucket_rows}, {row_group_rows}, {n_users}."
        )
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    n_buckets = max(1, min(n_users, math.ceil(total / bucket_rows)))
    width = math.ceil(n_users / n_buckets)
    scratch = out.parent / f".{out.name}.scratch"
    scratch.mkdir()
    written = 0
    try:
        buckets = _scatter(parts, scratch, n_buckets, width)
        with pq.ParquetWriter(out, SEEN, compression="zstd", write_statistics=True) as writer:
            for path in buckets:
                with ipc.open_file(path) as reader:
                    table = reader.read_all()
                user = table.column("user").to_numpy()
                item = table.column("item").to_numpy()
                order = np.lexsort((item, user))
                del table
                sorted_ = pa.table({"user": user[order], "item": item[order]}, schema=SEEN)
                writer.write_table(sorted_, row_group_size=row_group_rows)
                written += sorted_.num_rows
                path.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return written


def row_groups_of(reader: pq.ParquetFile, user: int) -> list[int]:
    """Row groups whose ``user`` min/max statistics can hold ``user``."""
    meta = reader.metadata
    groups = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(0).statistics
        if stats is None or not stats.has_min_max or stats.min <= user <= stats.max:
            groups.append(g)
    return groups


def seen_items(path: Path, user: int) -> np.ndarray:
    """The dense items that dense ``user`` rated (train and validation), ascending.

    Only the row groups whose ``user`` statistics can hold ``user`` are read.
    """
    reader = pq.ParquetFile(path)
    table = reader.read_row_groups(row_groups_of(reader, user), columns=["user", "item"])
    users = table.column("user").to_numpy()
    return table.column("item").to_numpy()[users == user].astype(np.int32)
