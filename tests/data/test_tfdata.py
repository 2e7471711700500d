"""The streaming Parquet reader: every row once per epoch, exact batches, seeded order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from cflib import schema
from cflib.data import tfdata
from cflib.errors import ConfigError, DatasetError

PART_ROWS = (700, 1000, 333)  # 2033 rows: with batch 256, 7 full batches and 241 left


def write_part(path: Path, ids: np.ndarray, *, row_group: int = 128) -> Path:
    """A part where ``user`` is a unique row id, ``item = 2 * id`` and ``rating = id / 4``."""
    n = len(ids)
    table = pa.table(
        {
            "user": ids.astype(np.int32),
            "item": (2 * ids).astype(np.int32),
            "rating": (ids / 4).astype(np.float32),
            "date": pa.array(np.zeros(n, "datetime64[D]"), pa.date32()),
            "raw_user": ids.astype(np.int64),
            "raw_item": ids.astype(np.int64),
        },
        schema=schema.RATINGS,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group)
    return path


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    bounds = np.cumsum((0, *PART_ROWS))
    return [
        write_part(tmp_path / f"part-{k:05d}.parquet", np.arange(bounds[k], bounds[k + 1]))
        for k in range(len(PART_ROWS))
    ]


def epoch(ds: tf.data.Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(x["user"].numpy(), x["item"].numpy(), y.numpy()) for x, y in ds]


def test_count_batches() -> None:
    assert tfdata.count_batches(2033, 256, False) == 8
    assert tfdata.count_batches(2033, 256, True) == 7
    assert tfdata.count_batches(2048, 256, False) == 8
    assert tfdata.count_batches(0, 256, False) == 0
    with pytest.raises(ConfigError, match="batch_size"):
        tfdata.count_batches(10, 0, False)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_row_once_in_exact_batches(parts: list[Path], shuffle: bool) -> None:
    ds = tfdata.make_dataset(parts, batch_size=256, shuffle=shuffle, seed=3)
    assert int(ds.cardinality()) == 8
    spec_x, spec_y = ds.element_spec
    assert spec_x["user"].dtype == tf.int32 and spec_x["item"].dtype == tf.int32
    assert spec_y.dtype == tf.float32
    batches = epoch(ds)
    assert [len(b[0]) for b in batches] == [256] * 7 + [2033 - 7 * 256]
    user = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(np.sort(user), np.arange(sum(PART_ROWS)))
    # Columns stay aligned row by row through re-chunking and shuffling.
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), 2 * user)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), user / 4)
    if not shuffle:
        np.testing.assert_array_equal(user, np.arange(sum(PART_ROWS)))


def test_drop_remainder_gives_static_batches(parts: list[Path]) -> None:
    ds = tfdata.make_dataset(parts, batch_size=256, shuffle=True, seed=0, drop_remainder=True)
    assert ds.element_spec[1].shape.as_list() == [256]
    assert int(ds.cardinality()) == 7
    batches = epoch(ds)
    assert [len(b[0]) for b in batches] == [256] * 7
    assert len(np.unique(np.concatenate([b[0] for b in batches]))) == 7 * 256


def test_batch_larger_than_everything(parts: list[Path]) -> None:
    batches = epoch(tfdata.make_dataset(parts, batch_size=10_000, shuffle=False, seed=0))
    assert [len(b[0]) for b in batches] == [sum(PART_ROWS)]


def test_shuffle_is_seeded_and_changes_every_epoch(
    parts: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window smaller than the data, so that both part order and windows matter.
    monkeypatch.setattr(tfdata, "SHUFFLE_WINDOW_ROWS", 512)
    first = tfdata.make_dataset(parts, batch_size=100, shuffle=True, seed=7)
    again = tfdata.make_dataset(parts, batch_size=100, shuffle=True, seed=7)
    other = tfdata.make_dataset(parts, batch_size=100, shuffle=True, seed=8)

    def order(ds: tf.data.Dataset) -> np.ndarray:
        return np.concatenate([b[0] for b in epoch(ds)])

    first_epochs = [order(first), order(first)]
    again_epochs = [order(again), order(again)]
    for a, b in zip(first_epochs, again_epochs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first_epochs[0], first_epochs[1])
    assert not np.array_equal(first_epochs[0], order(other))
    for e in first_epochs:
        np.testing.assert_array_equal(np.sort(e), np.arange(sum(PART_ROWS)))


def test_missing_column_or_wrong_dtype(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"user": np.arange(3, dtype=np.int64)}), bad)
    with pytest.raises(DatasetError, match="bad.parquet"):
        tfdata.make_dataset([bad], batch_size=2, shuffle=False, seed=0)
    with pytest.raises(DatasetError, match="missing.parquet"):
        tfdata.make_dataset([tmp_path / "missing.parquet"], batch_size=2, shuffle=False, seed=0)
    with pytest.raises(ConfigError, match="batch_size"):
        tfdata.make_dataset([bad], batch_size=0, shuffle=False, seed=0)


def test_shards_are_disjoint_and_equal(tmp_path: Path) -> None:
    make_dataset = tfdata.make_dataset

    parts = []
    for k, rows in enumerate((700, 301)):
        start = sum((700, 301)[:k])
        parts.append(write_part(tmp_path / f"part-{k}.parquet", np.arange(start, start + rows)))
    seen = []
    for index in range(2):
        ds = make_dataset(parts, batch_size=100, shuffle=True, seed=3, shard=(index, 2))
        users = [b[0]["user"].numpy() for b in ds]
        assert len(users) == 1001 // 2 // 100 == ds.cardinality().numpy()
        assert all(len(u) == 100 for u in users)
        seen.append(set(np.concatenate(users).tolist()))
    assert not seen[0] & seen[1]


def test_resumed_epoch_skips_the_batches_already_trained(tmp_path: Path) -> None:
    make_dataset = tfdata.make_dataset

    path = write_part(tmp_path / "part.parquet", np.arange(1000))
    whole = [
        b[0]["user"].numpy()
        for b in make_dataset([path], batch_size=100, shuffle=True, seed=1, epoch=4)
    ]
    rest = [
        b[0]["user"].numpy()
        for b in make_dataset([path], batch_size=100, shuffle=True, seed=1, epoch=4, skip=3)
    ]
    assert len(rest) == 7
    for a, b in zip(whole[3:], rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_dataset_yields_the_epoch_and_batch_its_position_names(parts: list[Path]) -> None:
    """A dataset reused across one-epoch fits (``position``) yields, each time it is
    iterated, the batches a dataset made for that epoch and skip would."""
    at = [(0, 0)]
    reused = tfdata.make_dataset(
        parts, batch_size=256, shuffle=True, seed=5, cardinality=False, position=lambda: at[0]
    )
    for where in [(0, 0), (3, 0), (3, 5), (1, 8), (2, 0)]:
        at[0] = where
        fixed = tfdata.make_dataset(
            parts, batch_size=256, shuffle=True, seed=5, epoch=where[0], skip=where[1]
        )
        got, want = epoch(reused), epoch(fixed)
        assert len(got) == len(want) == max(8 - where[1], 0)
        for a, b in zip(got, want, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="position"):
        tfdata.make_dataset(parts, batch_size=256, shuffle=True, seed=5, position=lambda: at[0])


@pytest.mark.parametrize("drop", [False, True])
def test_a_held_split_yields_the_streamed_batches(parts: list[Path], drop: bool) -> None:
    """Held in memory, a split yields the very batches ``make_dataset`` streams: epoch by
    epoch, from a skipped batch on, several epochs in one dataset, and unshuffled."""
    held = tfdata.HeldSplit(parts, batch_size=256, seed=5, drop_remainder=drop)
    n = 7 if drop else 8
    assert held.batches_per_epoch == n

    def streamed(at: int, skip: int = 0, shuffle: bool = True) -> list[Any]:
        return epoch(
            tfdata.make_dataset(
                parts, batch_size=256, shuffle=shuffle, seed=5, epoch=at, skip=skip,
                drop_remainder=drop,
            )
        )  # fmt: skip

    cases = [
        (held.epochs(2), streamed(2)),
        (held.epochs(1, skip=3), streamed(1, 3)),
        (held.epochs(0, count=3, skip=2), streamed(0, 2) + streamed(1) + streamed(2)),
        (held.fixed(), streamed(0, shuffle=False)),
    ]
    for ds, want in cases:
        spec = ds.element_spec[1].shape.as_list()
        assert spec == ([256] if drop else [None])
        got = epoch(ds)
        assert len(got) == len(want) and len(want) in (n, n - 3, 3 * n - 2)
        for a, b in zip(got, want, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    # Its rows as columns (what validation in numpy reads): the unshuffled batches joined.
    unshuffled = epoch(held.fixed())
    columns = held.columns()
    assert [c.dtype for c in columns] == [np.int32, np.int32, np.float32]
    if not drop:  # every row, in order
        for k in range(3):
            np.testing.assert_array_equal(columns[k], np.concatenate([b[k] for b in unshuffled]))
    else:  # every row, also where the batches leave the short last one out
        assert len(columns[0]) == sum(pq.read_metadata(p).num_rows for p in parts)


def _grouped_epoch(paths: list[Path], epoch: int, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """(user, item, rating) rows of one grouped epoch, in order, from windows of 500 rows."""
    monkeypatch.setattr(tfdata, "GROUP_WINDOW_ROWS", 500)
    ds = tfdata.make_dataset(
        paths, batch_size=64, shuffle=True, seed=3, epoch=epoch, group_users=True
    )
    rows = [np.stack([x["user"], x["item"], y], axis=1) for x, y in ds.as_numpy_iterator()]
    return np.concatenate(rows)


def test_group_users_keeps_each_window_s_users_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    user = rng.integers(0, 40, 2000)  # 40 users, ~50 ratings each
    ids = np.arange(2000)
    table = pa.table(
        {
            "user": user.astype(np.int32), "item": ids.astype(np.int32),
            "rating": (ids / 4).astype(np.float32),
            "date": pa.array(np.zeros(2000, "datetime64[D]"), pa.date32()),
            "raw_user": user.astype(np.int64), "raw_item": ids.astype(np.int64),
        },
        schema=schema.RATINGS,
    )  # fmt: skip
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pq.write_table(table.slice(0, 1000), paths[0])
    pq.write_table(table.slice(1000), paths[1])
    first, again = _grouped_epoch(paths, 0, monkeypatch), _grouped_epoch(paths, 0, monkeypatch)
    np.testing.assert_array_equal(first, again)  # seeded
    assert sorted(first[:, 1].astype(int).tolist()) == ids.tolist()  # every row once
    # Each window of ~500 rows holds each user's rows in one run: ~40 runs a window (ratings
    # carried over between windows add a few), not the ~480 of a random order.
    runs = 1 + np.count_nonzero(np.diff(first[:, 0]))
    assert runs <= 4 * 40 + 8, runs
    second = _grouped_epoch(paths, 1, monkeypatch)
    assert not np.array_equal(first[:, 0], second[:, 0])  # the user order is redrawn
    # Validation: grouped too, without shuffling, the same every time.
    plain = tfdata.make_dataset(paths, batch_size=64, shuffle=False, seed=0, group_users=True)
    users = np.concatenate([x["user"] for x, _ in plain.as_numpy_iterator()])
    assert 1 + np.count_nonzero(np.diff(users)) <= 4 * 40 + 8
    # In memory (benchmarks): each batch of 64 holds one or two users, ~2 runs a batch.
    memory = tfdata.memory_dataset(paths, batch_size=64, shuffle=True, seed=0, group_users=True)
    runs = [1 + np.count_nonzero(np.diff(x["user"])) for x, _ in memory.as_numpy_iterator()]
    assert len(runs) == 2000 // 64 and max(runs) <= 3
