"""Parquet parts -> a streaming ``tf.data.Dataset`` of ``({"user", "item"}, rating)`` batches.

Record batches are read with pyarrow and re-chunked in numpy to exactly ``batch_size``
rows: whole record batches cost ~19 M rows/s here, while per-row generators and
``unbatch().batch()`` are 30-1000x slower (``/work/shared/STACK.md``). At most one
shuffle window (about a million rows) sits in memory, never a whole split.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from cflib.errors import ConfigError, DatasetError

#: Columns read from each part and the dtypes the models expect.
FEATURES = ("user", "item")
LABEL = "rating"
_DTYPES = {"user": pa.int32(), "item": pa.int32(), "rating": pa.float32()}

#: Rows per pyarrow read; ingest writes row groups of ~128k rows.
READ_ROWS = 1 << 17
#: Rows permuted together when ``shuffle`` is true (12 bytes a row: ~12 MB).
SHUFFLE_WINDOW_ROWS = 1 << 20
#: Rows grouped by user together with ``group_users`` (12 bytes a row: ~100 MB).
GROUP_WINDOW_ROWS = 1 << 23
#: An odd 32-bit multiplier: ``(user ^ salt) * _MIX`` permutes the user ids.
_MIX = np.uint32(0x9E3779B1)

Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


def count_batches(rows: int, batch_size: int, drop_remainder: bool) -> int:
    """Number of batches ``make_dataset`` yields for ``rows`` rows.

    Args:
        rows: rows in all parts together.
        batch_size: rows per batch.
        drop_remainder: whether a last partial batch is dropped.
    """
    if batch_size <= 0:
        raise ConfigError(f"`batch_size` should be a positive integer. Received: {batch_size}.")
    if rows < 0:
        raise ValueError(f"`rows` should be non-negative. Received: {rows}.")
    return rows // batch_size if drop_remainder else math.ceil(rows / batch_size)


def count_rows(paths: Sequence[Path]) -> int:
    """Total rows of Parquet parts, from their footers; checks the columns' types.

    Raises:
        DatasetError: a part is missing, unreadable, or lacks a column or its dtype.
    """
    return sum(_open(Path(p)).metadata.num_rows for p in paths)


def make_dataset(
    paths: Sequence[Path],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_remainder: bool = False,
    epoch: int | None = None,
    skip: int = 0,
    shard: tuple[int, int] = (0, 1),
    cardinality: bool = True,
    group_users: bool = False,
    position: Callable[[], tuple[int, int]] | None = None,
) -> tf.data.Dataset:
    """Stream Parquet parts as batches of exactly ``batch_size`` rows.

    Each iteration of the dataset (each Keras epoch) reads every row once. With
    ``shuffle``, the order of the parts is redrawn every epoch and rows are permuted
    within windows of about a million rows, from a generator seeded by ``seed`` and
    the epoch number: the same ``seed`` gives the same sequence of epochs in every
    run. Ingest already shuffled the train rows across and within parts.

    Args:
        paths: Parquet parts in the ``cflib.schema.RATINGS`` schema.
        batch_size: rows per batch; the last one is smaller unless ``drop_remainder``.
        shuffle: reorder parts and rows every epoch.
        seed: seed of the shuffle.
        drop_remainder: drop the last partial batch (static batch dimension).
        epoch: the epoch whose order every iteration yields (default: the first
            iteration yields epoch 0, the next epoch 1, ...). A resumed run passes it.
        skip: batches of the (first) iteration to leave out: those a resumed run already
            trained on. Only with ``epoch``.
        shard: ``(index, count)``: this input pipeline reads every ``count``-th row from
            row ``index`` on (multi-worker training); every shard yields the same number
            of full batches, ``rows // count // batch_size``.
        cardinality: declare the number of batches (``assert_cardinality``). Keras 3.15
            trains biased MF from a generator 40% slower when it knows it (0.92 against
            1.52M ratings/s here), so training leaves it out.
        group_users: sort each window of about ``GROUP_WINDOW_ROWS`` rows by user (users
            in an order drawn per window when shuffling), so that a batch holds few
            users, each with many of their ratings (``svdpp``: a step costs sum |N(u)|
            over the batch's users).
        position: instead of ``epoch`` and ``skip``, asked as each iteration starts: the
            epoch it yields and the batches of it to leave out. One dataset then serves
            a run's one-epoch ``fit`` calls (``cflib.train.inputs``): building a dataset
            from a generator traces its functions, 0.03-0.05 s each time.

    Returns:
        A dataset of ``({"user": int32[B], "item": int32[B]}, rating float32[B])``,
        prefetched, with a known cardinality unless ``cardinality`` is false.

    Raises:
        ConfigError: ``batch_size`` is not positive.
        DatasetError: a part is missing or lacks the expected columns.
    """
    if batch_size <= 0:
        raise ConfigError(f"`batch_size` should be a positive integer. Received: {batch_size}.")
    paths = [Path(p) for p in paths]
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(
            f"`shard` should be (index, count) with 0 <= index < count. Received: {shard}."
        )
    rows = count_rows(paths)
    if count > 1:
        drop_remainder = True
        n_batches = rows // count // batch_size
    else:
        n_batches = count_batches(rows, batch_size, drop_remainder)
    if skip and epoch is None:
        raise ValueError("`skip` needs `epoch`: the batches to skip are those of one epoch")
    if position is not None and (epoch is not None or skip or cardinality):
        raise ValueError(
            "`position` replaces `epoch` and `skip`, and leaves the cardinality unknown: "
            "give neither `epoch`, `skip` nor `cardinality` with it"
        )
    epochs = itertools.count() if epoch is None else itertools.repeat(epoch)

    def where() -> tuple[int, int]:
        return position() if position is not None else (next(epochs), skip)

    def generate() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        # A fresh generator per iterator, i.e. per epoch: the counter makes each epoch's
        # order different and the whole sequence reproducible.
        at, first = where()
        rng = np.random.default_rng([seed, at]) if shuffle else None
        blocks = _blocks(paths, batch_size, drop_remainder, rng, shard, group_users)
        for user, item, rating in _take(blocks, first, max(n_batches - first, 0)):
            yield {"user": user, "item": item}, rating

    # The generator yields blocks of consecutive batches ([batches, B]: one Python call
    # a shuffle window, not a batch) and ``unbatch`` cuts them into batches in C++: with
    # the fused step a Python call per batch held the GIL for half an epoch's time.
    dim = batch_size if drop_remainder else None
    signature = (
        {name: tf.TensorSpec([None, dim], tf.int32) for name in FEATURES},
        tf.TensorSpec([None, dim], tf.float32),
    )
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()
    if cardinality:
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(n_batches - skip, 0)))
    options = tf.data.Options()
    # A generator has no files to shard; DATA is what AUTO falls back to, minus the warning.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _open(path: Path) -> pq.ParquetFile:
    """Open a part and check that it has the columns the models read, in their dtypes."""
    try:
        part = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: unreadable Parquet part ({exc})") from exc
    arrow = part.schema_arrow
    for name, dtype in _DTYPES.items():
        index = arrow.get_field_index(name)
        if index < 0:
            raise DatasetError(f"{path}: no column {name!r}")
        if arrow.field(index).type != dtype:
            raise DatasetError(
                f"{path}: column {name!r} is {arrow.field(index).type}, expected {dtype}"
            )
    return part


def _take(blocks: Iterator[Columns], skip: int, n: int) -> Iterator[Columns]:
    """The batches ``skip`` to ``skip + n`` of a sequence of blocks of batches."""
    if n <= 0:
        return
    for block in blocks:
        k = len(block[0])
        if skip >= k:
            skip -= k
            continue
        block = tuple(col[skip : skip + n] for col in block)  # type: ignore[assignment]
        skip = 0
        n -= len(block[0])
        yield block
        if n <= 0:
            return


def _blocks(
    paths: Sequence[Path],
    batch_size: int,
    drop_remainder: bool,
    rng: np.random.Generator | None,
    shard: tuple[int, int] = (0, 1),
    group_users: bool = False,
    parts: Sequence[list[Columns]] | None = None,
) -> Iterator[Columns]:
    """Yield (user, item, rating) arrays of shape ``[batches, batch_size]``: consecutive
    batches, the last one possibly a single short batch ``[1, rows]``; from ``parts``
    (each part's record batches as ``_records`` reads them) if given."""
    order = rng.permutation(len(paths)) if rng is not None else range(len(paths))
    window = max(batch_size, SHUFFLE_WINDOW_ROWS) if rng is not None else batch_size
    if group_users:
        window = max(batch_size, GROUP_WINDOW_ROWS)
    pending: list[Columns] = []
    n_pending = 0
    index, count = shard
    seen = 0
    for i in order:
        for cols in parts[i] if parts is not None else _records(paths[i]):
            if count > 1:  # this shard's rows: global positions index, index + count, ...
                first = (index - seen) % count
                seen += len(cols[0])
                cols = tuple(c[first::count] for c in cols)  # type: ignore[assignment]
            pending.append(cols)  # type: ignore[arg-type]
            n_pending += len(cols[0])
            if n_pending >= window:
                buffer = _concat(pending, rng, group_users)
                n_full = len(buffer[0]) // batch_size * batch_size
                yield from _split(buffer, n_full, batch_size)
                pending = [tuple(col[n_full:] for col in buffer)]  # type: ignore[list-item]
                n_pending = len(buffer[0]) - n_full
    if n_pending:
        buffer = _concat(pending, rng, group_users)
        yield from _split(buffer, n_pending, batch_size)
        if n_pending % batch_size and not drop_remainder:
            start = n_pending // batch_size * batch_size
            yield tuple(col[None, start:] for col in buffer)  # type: ignore[misc]


def _records(path: Path) -> Iterator[Columns]:
    """A part's (user, item, rating) arrays, one record batch of ``READ_ROWS`` at a time."""
    for record in _open(path).iter_batches(batch_size=READ_ROWS, columns=[*FEATURES, LABEL]):
        yield tuple(record.column(c).to_numpy() for c in _DTYPES)  # type: ignore[misc]


def _concat(pending: list[Columns], rng: np.random.Generator | None, group: bool) -> Columns:
    """Concatenate buffered record batches column-wise, permuting the rows if ``rng``,
    then grouping them by user if ``group`` (users in a drawn order if ``rng``)."""
    columns = tuple(np.concatenate([p[c] for p in pending]) for c in range(3))
    if rng is not None:
        perm = rng.permutation(len(columns[0]))
        columns = tuple(col[perm] for col in columns)
    if group:
        salt = np.uint32(rng.integers(1 << 32)) if rng is not None else np.uint32(0)
        key = (columns[0].astype(np.uint32) ^ salt) * _MIX  # a bijection of the ids
        perm = np.argsort(key, kind="stable")
        columns = tuple(col[perm] for col in columns)
    return columns  # type: ignore[return-value]


def _split(buffer: Columns, rows: int, batch_size: int) -> Iterator[Columns]:
    """Yield the full batches among the first ``rows`` rows of ``buffer``, as one block."""
    n = rows // batch_size
    if n:
        yield tuple(col[: n * batch_size].reshape(n, batch_size) for col in buffer)  # type: ignore[misc]


def memory_dataset(
    paths: Sequence[Path], *, batch_size: int, shuffle: bool, seed: int, group_users: bool = False
) -> tf.data.Dataset:
    """The same batches as ``make_dataset`` but from tensors held in memory.

    For benchmarks and small data only: the whole split is read (12 bytes a rating) and
    sliced into full batches (the last partial batch is dropped); with ``shuffle`` the
    order of the batches is redrawn every epoch; with ``group_users`` the rows are sorted
    by user first. ``make_dataset`` is what training uses.
    """
    if batch_size <= 0:
        raise ConfigError(f"`batch_size` should be a positive integer. Received: {batch_size}.")
    paths = [Path(p) for p in paths]
    table = pa.concat_tables(
        [_open(p).read(columns=[*FEATURES, LABEL]) for p in paths]
    ).combine_chunks()
    n = table.num_rows // batch_size
    cols = {c: table[c].to_numpy() for c in _DTYPES}
    if group_users:
        order = np.argsort(cols["user"], kind="stable")
        cols = {c: col[order] for c, col in cols.items()}
    cols = {c: col[: n * batch_size].reshape(n, batch_size) for c, col in cols.items()}
    ds = tf.data.Dataset.from_tensor_slices(
        ({"user": cols["user"], "item": cols["item"]}, cols[LABEL])
    )
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


class HeldSplit:
    """Parquet parts read into memory once, and the batches ``make_dataset`` would stream
    from them, drawn by the same code for each epoch, as a dataset of tensors.

    No file is read and no Python generator runs beside the training step while such a
    dataset is iterated: behind ``make_dataset``'s generator, whose calls contend with the
    step for the GIL, the row step trained 1.2-1.3M ratings/s on 171,005 ratings on 2
    cores, from these tensors about 3.9M (BENCHMARKS.md, "Small data"). For small
    splits: the split and the epochs asked for at once are held (12 bytes a rating each).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int,
        seed: int,
        drop_remainder: bool = False,
        group_users: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ConfigError(f"`batch_size` should be a positive integer. Received: {batch_size}.")
        self.paths = [Path(p) for p in paths]
        self.parts = [list(_records(p)) for p in self.paths]
        self.batch_size, self.seed = batch_size, seed
        self.drop, self.group_users = drop_remainder, group_users
        rows = sum(len(c[0]) for part in self.parts for c in part)
        self.batches_per_epoch = count_batches(rows, batch_size, drop_remainder)

    def epochs(self, first: int, count: int = 1, skip: int = 0) -> tf.data.Dataset:
        """The batches ``make_dataset(..., shuffle=True, epoch=e)`` yields for the epochs
        ``first`` to ``first + count - 1`` in turn, the first from batch ``skip`` on."""
        blocks: list[Columns] = []
        for epoch in range(first, first + count):
            rng = np.random.default_rng([self.seed, epoch])
            drawn = _blocks(
                self.paths, self.batch_size, self.drop, rng, group_users=self.group_users,
                parts=self.parts,
            )  # fmt: skip
            blocks += _take(drawn, skip if epoch == first else 0, sys.maxsize)
        return self._dataset(blocks)

    def columns(self) -> Columns:
        """The split's (user, item, rating) rows in part order, as read."""
        records = [c for part in self.parts for c in part]
        if not records:
            return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
        return tuple(np.concatenate([r[k] for r in records]) for k in range(3))  # type: ignore[return-value]

    def fixed(self) -> tf.data.Dataset:
        """The batches ``make_dataset(..., shuffle=False)`` yields (every epoch the same)."""
        return self._dataset(list(_blocks(self.paths, self.batch_size, self.drop, None,
                                          parts=self.parts)))  # fmt: skip

    def _dataset(self, blocks: list[Columns]) -> tf.data.Dataset:
        """The batches of ``blocks`` (``_blocks``) in order: each block of full batches
        sliced into them, a short batch apart; batches of ``[None]`` rows
        (``[batch_size]`` with ``drop_remainder``), as streamed."""
        pieces: list[tf.data.Dataset] = []
        for block in blocks:
            if not len(block[0]):
                continue
            if block[0].shape[1] == self.batch_size:
                pieces.append(_tensors(list(block), tf.data.Dataset.from_tensor_slices))
            else:  # the last, short batch
                pieces.append(_tensors([c[0] for c in block], tf.data.Dataset.from_tensors))
        if not self.drop or not pieces:  # a piece of shape [0] makes the batch dimension [None]
            empty = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
            pieces.append(_tensors(list(empty), tf.data.Dataset.from_tensors).take(0))
        ds = pieces[0]
        for piece in pieces[1:]:
            ds = ds.concatenate(piece)
        return ds.prefetch(tf.data.AUTOTUNE)


def _tensors(cols: list[np.ndarray], make: Any) -> tf.data.Dataset:
    return make(({"user": cols[0], "item": cols[1]}, cols[2]))
