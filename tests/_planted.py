"""A small dataset with a planted biased-MF model, and quality bars computed from it.

``rating = 3.5 + b_u + b_i + p_u.q_i + noise`` in the ingest layout (with a manifest). The
bars are computed here with numpy, independently of cflib: the planted model's RMSE, and
the lowest validation RMSE that any model of biases alone can reach.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cflib import schema
from cflib.data.manifest import Manifest, SourceInfo, SplitInfo, schema_fields, write_manifest

N_USERS, N_ITEMS, N_RATINGS, RANK = 300, 200, 30_000, 4
NOISE = 0.3


def _draw(seed: int) -> dict[str, np.ndarray]:
    """Every planted array, from one seeded generator (in a fixed order)."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, N_USERS, N_RATINGS).astype(np.int32)
    item = rng.integers(0, N_ITEMS, N_RATINGS).astype(np.int32)
    b_u, b_i = rng.normal(0, 0.5, N_USERS), rng.normal(0, 0.5, N_ITEMS)
    p, q = rng.normal(0, 0.5, (N_USERS, RANK)), rng.normal(0, 0.5, (N_ITEMS, RANK))
    noise = rng.normal(0, NOISE, N_RATINGS)
    score = 3.5 + b_u[user] + b_i[item] + (p[user] * q[item]).sum(1)
    rating = (score + noise).astype(np.float32)
    which = rng.choice(3, N_RATINGS, p=[0.8, 0.1, 0.1])
    return {"user": user, "item": item, "score": score, "rating": rating, "which": which}


def write_planted(root: Path, *, seed: int = 0) -> Path:
    """The planted dataset in the ingest layout, with a manifest (fingerprint ``planted-0``)."""
    d = _draw(seed)
    splits = {
        split: {k: d[k][d["which"] == code] for k in ("user", "item", "rating")}
        for code, split in enumerate(schema.SPLITS)
    }
    return write_dataset(
        root,
        splits,
        n_users=N_USERS,
        n_items=N_ITEMS,
        name="planted",
        fingerprint=f"planted-{seed}",
    )


def write_dataset(
    root: Path,
    splits: dict[str, dict[str, np.ndarray]],
    *,
    n_users: int,
    n_items: int,
    name: str,
    fingerprint: str,
) -> Path:
    """Dense ``user``, ``item`` and ``rating`` arrays per split, written as ``cfpipe ingest``
    writes a dataset (the train split in two parts), with its manifest."""
    infos = {}
    for split in schema.SPLITS:
        cols = splits[split]
        rows = np.arange(len(cols["rating"]))
        files = []
        for k, part in enumerate(np.array_split(rows, 2 if split == "train" else 1)):
            rel = f"{schema.split_dir(split)}/part-{k:05d}.parquet"
            user, item = cols["user"][part].astype(np.int32), cols["item"][part].astype(np.int32)
            table = pa.table(
                {
                    "user": user,
                    "item": item,
                    "rating": cols["rating"][part].astype(np.float32),
                    "date": pa.array(np.zeros(len(part), "datetime64[D]"), pa.date32()),
                    "raw_user": user.astype(np.int64) + 1000,
                    "raw_item": item.astype(np.int64) + 1,
                },
                schema=schema.RATINGS,
            )
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / rel)
            files.append(rel)
        stored = cols["rating"].astype(np.float32).astype(np.float64)
        infos[split] = SplitInfo(
            rows=len(rows),
            rating_sum=float(stored.sum()),
            rating_min=float(stored.min()) if len(rows) else None,
            rating_max=float(stored.max()) if len(rows) else None,
            files=files,
        )
    manifest = Manifest(
        name=name,
        created_at="2026-11-23T21:22:33Z",
        source=SourceInfo(path="memory", format="netflix", fingerprint="src", files=0, bytes=0),
        ingest_config={},
        n_users=n_users,
        n_items=n_items,
        splits=infos,
        split="random",
        schema=schema_fields(schema.RATINGS),
        fingerprint=fingerprint,
    )
    write_manifest(root, manifest)
    return root


def read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User ids, item ids and ratings (float64) of one split as written."""
    table = pq.read_table(root / schema.split_dir(split))
    return (
        table["user"].to_numpy(),
        table["item"].to_numpy(),
        table["rating"].to_numpy().astype(np.float64),
    )


def baseline_rmse(root: Path, split: str = "validation") -> float:
    """RMSE of predicting the training mean for every rating of ``split``."""
    manifest = json.loads((root / schema.MANIFEST_FILE).read_text())
    mean = manifest["splits"]["train"]["rating_sum"] / manifest["splits"]["train"]["rows"]
    rating = read_split(root, split)[2]
    return float(np.sqrt(np.mean((rating - mean) ** 2)))


def planted_rmse(seed: int = 0, split: str = "validation") -> float:
    """RMSE of the planted (noise-free) model on ``split``: what no model beats by much."""
    d = _draw(seed)
    rows = d["which"] == schema.SPLITS.index(split)
    return float(np.sqrt(np.mean((d["rating"][rows] - d["score"][rows]) ** 2)))


def bias_only_floor(user: np.ndarray, item: np.ndarray, rating: np.ndarray) -> float:
    """The lowest RMSE on these ratings of any ``c + b_u + b_i``: least squares fitted on
    the very ratings it is scored on, so no biases-only model does better on them."""
    users, u = np.unique(user, return_inverse=True)
    items, i = np.unique(item, return_inverse=True)
    design = np.zeros((len(rating), 1 + len(users) + len(items)))
    rows = np.arange(len(rating))
    design[:, 0] = 1.0
    design[rows, 1 + u] = 1.0
    design[rows, 1 + len(users) + i] = 1.0
    coef, *_ = np.linalg.lstsq(design, rating, rcond=None)
    return float(np.sqrt(np.mean((design @ coef - rating) ** 2)))


def quality_bar(root: Path, seed: int = 0) -> float:
    """Validation RMSE a trained biased MF must beat: halfway from the planted model's RMSE
    to the biases-only floor, so that biases alone fail it and learned factors pass."""
    floor = bias_only_floor(*read_split(root, "validation"))
    planted = planted_rmse(seed)
    return planted + 0.5 * (floor - planted)


def fit_biases(
    user: np.ndarray, item: np.ndarray, rating: np.ndarray, n_users: int, n_items: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``mu + b_u + b_i`` on these ratings (alternating exact updates, to
    convergence); users and items without ratings get 0."""
    mu = float(rating.mean())
    b_u, b_i = np.zeros(n_users), np.zeros(n_items)
    n_u = np.maximum(np.bincount(user, minlength=n_users), 1)
    n_i = np.maximum(np.bincount(item, minlength=n_items), 1)
    for _ in range(100):
        b_i = np.bincount(item, rating - mu - b_u[user], n_items) / n_i
        b_u = np.bincount(user, rating - mu - b_i[item], n_users) / n_u
    return mu, b_u, b_i
