"""Implicit feedback: the items each user rated in any split, as CSR arrays.

``svdpp`` adds to a user's vector the normalized sum of item vectors over N(u), every
item user u rated: in the train, validation and test splits, and the Netflix qualifying
pairs (``qualifying.parquet``), whose ratings nobody has. Who rated what is known for
all of them, only the rating is withheld (Koren 2008).

N(u) is stored as CSR: ``offsets`` (int64 ``[n_users + 1]``) and ``items`` (int32, one
per (user, item) pair; user u's items are ``items[offsets[u]:offsets[u + 1]]``). At the
Netflix shape that is 100M pairs, ~400 MB. It is built in two streamed passes over the
Parquet parts (count per user, then place each pair), written through a memory map:
never a frame of everything in memory. It is cached in the dataset directory under
``implicit/<fingerprint>/`` (the dataset's fingerprint: a re-ingest replaces the whole
directory), built next to it and renamed into place, so concurrent trainings share one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from cflib import schema
from cflib.data.manifest import Manifest
from cflib.errors import DatasetError
from cflib.fsutil import staging_dir
from cflib.logs import stage_logger

log = stage_logger("train")

CACHE_DIR = "implicit"
OFFSETS_FILE = "offsets.npy"
ITEMS_FILE = "items.npy"
#: Rows per Parquet read.
READ_ROWS = 1 << 20


@dataclass(frozen=True)
class ImplicitSets:
    """N(u) of every user as CSR.

    Attributes:
        offsets: int64 ``[n_users + 1]``; user u's items are ``items[offsets[u]:offsets[u+1]]``.
        items: int32 ``[offsets[-1]]`` dense item ids (memory-mapped when loaded).
        n_items: rows of the item tables (every id is below it).
    """

    offsets: np.ndarray
    items: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    def counts(self) -> np.ndarray:
        """|N(u)| per user, int64 ``[n_users]``."""
        return np.diff(self.offsets)


def sources(root: Path, manifest: Manifest) -> list[Path]:
    """The Parquet files whose (user, item) pairs make up N(u): every split's parts, then
    ``qualifying.parquet`` if the dataset has one."""
    paths = [p for split in schema.SPLITS for p in manifest.split_paths(root, split)]
    qualifying = root / schema.QUALIFYING_FILE
    if manifest.qualifying_rows and qualifying.is_file():
        paths.append(qualifying)
    return paths


def _pairs(paths: list[Path], n_users: int, n_items: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(user, item) int32 arrays of each record batch; qualifying pairs whose user or item
    is unknown (null ids) are left out; an id out of range is an error naming the file."""
    for path in paths:
        part = pq.ParquetFile(path)
        for batch in part.iter_batches(batch_size=READ_ROWS, columns=["user", "item"]):
            user, item = batch.column(0), batch.column(1)
            known = np.ones(batch.num_rows, bool)
            if user.null_count or item.null_count:
                known = ~(user.is_null().to_numpy(False) | item.is_null().to_numpy(False))
            u = user.fill_null(0).to_numpy().astype(np.int32, copy=False)[known]
            i = item.fill_null(0).to_numpy().astype(np.int32, copy=False)[known]
            for name, ids, n in (("user", u, n_users), ("item", i, n_items)):
                if len(ids) and (ids.min() < 0 or ids.max() >= n):
                    raise DatasetError(
                        f"{path}: column {name!r} holds id {int(ids.max())} or {int(ids.min())} "
                        f"outside 0..{n - 1} (the manifest's n_{name}s); re-run `cfpipe ingest "
                        "--force`"
                    )
            yield u, i


def build(root: Path, manifest: Manifest, out: Path) -> ImplicitSets:
    """Write N(u) of the dataset at ``root`` into the new directory ``out``.

    Two passes over the parts: counts per user (the offsets), then each record batch's
    pairs, sorted by user (stably, so each row keeps the files' order), written at their
    users' next free positions of a memory-mapped ``items.npy``. Memory: the offsets, one
    record batch and the pages of ``items.npy`` the kernel keeps.
    """
    paths = sources(root, manifest)
    n_users, n_items = manifest.n_users, manifest.n_items
    counts = np.zeros(n_users, np.int64)
    for user, _ in _pairs(paths, n_users, n_items):
        counts += np.bincount(user, minlength=n_users)
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / OFFSETS_FILE, offsets, allow_pickle=False)
    items = np.lib.format.open_memmap(
        out / ITEMS_FILE, mode="w+", dtype=np.int32, shape=(int(offsets[-1]),)
    )
    cursor = offsets[:-1].copy()
    for user, item in _pairs(paths, n_users, n_items):
        order = np.argsort(user, kind="stable")
        user, item = user[order], item[order]
        # Rank of each pair among its user's pairs in this batch.
        rank = np.arange(len(user)) - np.searchsorted(user, user, side="left")
        items[cursor[user] + rank] = item
        cursor += np.bincount(user, minlength=n_users)
    items.flush()
    del items
    return load(out, n_items)


def load(path: Path, n_items: int) -> ImplicitSets:
    """The CSR arrays in ``path`` (``items`` memory-mapped).

    Raises:
        DatasetError: a file is missing or unreadable, or the two disagree.
    """
    try:
        offsets = np.load(path / OFFSETS_FILE, allow_pickle=False)
        items = np.load(path / ITEMS_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable implicit-feedback arrays ({exc})") from None
    if offsets.ndim != 1 or len(offsets) < 2 or int(offsets[-1]) != len(items):
        raise DatasetError(
            f"{path / OFFSETS_FILE}: ends at {int(offsets[-1]) if len(offsets) else None}, "
            f"{path / ITEMS_FILE} holds {len(items)} items; delete {path} to rebuild it"
        )
    return ImplicitSets(offsets, items, n_items)


def load_or_build(root: Path, manifest: Manifest, fallback: Path) -> ImplicitSets:
    """N(u) of the dataset at ``root``, from its cache or built (and cached) now.

    Args:
        root: the dataset directory.
        manifest: its manifest.
        fallback: where to build if the dataset directory is read-only (the run's
            checkpoints directory); that copy is rebuilt by each run.
    """
    cached = root / CACHE_DIR / manifest.fingerprint[:16]
    if cached.is_dir():
        return load(cached, manifest.n_items)
    try:
        stage = staging_dir(cached)
    except OSError as exc:
        log.info("%s: not writable (%s); building N(u) in %s", root, exc, fallback)
        shutil.rmtree(fallback, ignore_errors=True)  # what a killed build may have left
        return build(root, manifest, fallback)
    try:
        sets = build(root, manifest, stage)
        try:
            os.rename(stage, cached)
        except OSError:  # another training put its copy there first: use that one
            if not cached.is_dir():
                raise
        else:
            log.info("N(u): %d pairs cached in %s", len(sets.items), cached)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return load(cached, manifest.n_items)
