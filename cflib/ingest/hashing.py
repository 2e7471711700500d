"""Seeded, stable hashes of (user, item) pairs: the draws and buckets behind the split
step (``cflib.ingest.split``) and the pair keys that find repeated ratings.

A rating's split and bucket depend only on its raw ids and the seed, so they do not
change with the number of shards, workers or machines.
"""

from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)

# Salts that make the test, validation and bucket draws independent of each other.
SALT_TEST = 1
SALT_VALIDATION = 2
SALT_BUCKET = 3


def pair_keys(raw_item: np.ndarray, raw_user: np.ndarray) -> np.ndarray:
    """One uint64 per (item, user): item in the high 32 bits, user in the low 32."""
    item = raw_item.astype(np.uint64)
    user = raw_user.astype(np.uint64)
    return (item << np.uint64(32)) | (user & np.uint64(0xFFFFFFFF))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, vectorized; uint64 arithmetic wraps as intended."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def hash_keys(keys: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """64-bit hashes of ``keys`` under (seed, salt)."""
    mix = _splitmix64(np.asarray([seed * 1_000_003 + salt], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        return _splitmix64(keys ^ mix)


def uniform01(keys: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) floats, one per key."""
    return (hash_keys(keys, seed, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def buckets(keys: np.ndarray, seed: int, n_buckets: int) -> np.ndarray:
    """Bucket index in ``0..n_buckets-1`` per key."""
    if n_buckets <= 0:
        raise ValueError(f"`n_buckets` should be a positive integer. Received: {n_buckets}.")
    return (hash_keys(keys, seed, SALT_BUCKET) % np.uint64(n_buckets)).astype(np.int64)


def sorted_member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``keys`` are in ``sorted_set`` (ascending, unique)."""
    if sorted_set.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, keys)
    pos[pos == sorted_set.size] = 0
    return sorted_set[pos] == keys
