"""A small dataset where who rated what predicts the ratings (implicit feedback).

Each user has a hidden taste ``a_u`` and each item a profile ``c_i``; a user picks the
items to rate with odds ``exp(SELECT * a_u . c_i)`` and rates them ``3.5 + a_u . c_i``
plus noise. A user's training ratings are few, but the items of all their ratings (the
validation and test ones included, as ``svdpp`` reads them) reveal ``a_u``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cflib import schema
from tests._planted import write_dataset

N_USERS, N_ITEMS, PER_USER, RANK = 400, 120, 30, 2
SELECT, NOISE = 2.0, 0.3
#: Share of each user's ratings in train, validation and test.
SHARES = (0.3, 0.2, 0.5)


def write_implicit(root: Path, *, seed: int = 0) -> Path:
    """The dataset in the ingest layout, with a manifest (fingerprint ``implicit-<seed>``)."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(0, 1, (N_USERS, RANK))
    profile = rng.normal(0, 1, (N_ITEMS, RANK))
    affinity = taste @ profile.T
    odds = np.exp(SELECT * affinity)
    users, items = [], []
    for u in range(N_USERS):
        chosen = rng.choice(N_ITEMS, PER_USER, replace=False, p=odds[u] / odds[u].sum())
        users.append(np.full(PER_USER, u))
        items.append(chosen)
    user, item = np.concatenate(users), np.concatenate(items)
    rating = 3.5 + 0.5 * affinity[user, item] + rng.normal(0, NOISE, len(user))
    which = rng.choice(3, len(user), p=SHARES)
    splits = {
        split: {"user": user[which == k], "item": item[which == k], "rating": rating[which == k]}
        for k, split in enumerate(schema.SPLITS)
    }
    return write_dataset(
        root, splits, n_users=N_USERS, n_items=N_ITEMS, name="implicit",
        fingerprint=f"implicit-{seed}",
    )  # fmt: skip
