"""SVD++ step speed at the Netflix shape: ratings/s of training steps against biased MF,
with batches grouped by user (as training feeds them) and in random order.

    .venv/bin/python bench/svdpp.py                  # 480,189 users, 17,770 items, ~100M N(u)
    .venv/bin/python bench/svdpp.py --users 50000    # a smaller probe

A probe, not the pipeline: N(u) is drawn in memory with the Netflix shape (|N(u)| log-normal,
mean ~209, the full CSR of ~100M pairs), and the train rows are each user's N(u) with
random ratings. Batches are built in memory, so the figures are the model's and the
optimizer's (``SparseAdagrad``), one device, after warm-up steps. Writes the section
"SVD++ step speed" of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench._report import machine, write_section  # noqa: E402
from cflib.data.implicit import ImplicitSets  # noqa: E402
from cflib.data.tfdata import GROUP_WINDOW_ROWS  # noqa: E402


def draw_sets(users: int, items: int, mean: float, seed: int) -> ImplicitSets:
    """N(u) with log-normal sizes of mean ``mean`` and Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    sigma = 1.2
    sizes = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, users).astype(np.int64)
    sizes = np.clip(sizes, 1, items)
    offsets = np.zeros(users + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    cdf = np.cumsum(popularity / popularity.sum())
    out = np.empty(int(offsets[-1]), np.int32)
    step = 1 << 24
    for start in range(0, len(out), step):  # chunks: bounded temporaries
        u = rng.random(min(step, len(out) - start))
        out[start : start + len(u)] = np.searchsorted(cdf, u).astype(np.int32)
    return ImplicitSets(offsets, np.minimum(out, items - 1), items)


def batches(sets: ImplicitSets, batch: int, n: int, order: str, seed: int) -> list[dict]:
    """``n`` batches of train rows (user, item of N(u)): users in a random order with all
    their rows together (``grouped by user``); a window of ``GROUP_WINDOW_ROWS`` rows
    drawn from all, grouped by user as training streams them (``grouped in windows``);
    or rows drawn uniformly (``random``)."""
    rng = np.random.default_rng(seed)
    counts = sets.counts()
    out = []
    if order.startswith("grouped in"):
        rows = rng.integers(0, len(sets.items), min(GROUP_WINDOW_ROWS, len(sets.items)))
        users = (np.searchsorted(sets.offsets, rows, side="right") - 1).astype(np.int32)
        rank = rng.permutation(sets.n_users)[users]
        keep = np.argsort(rank, kind="stable")[: batch * n]
        users, items = users[keep], np.asarray(sets.items)[rows[keep]]
    elif order == "grouped by user":
        order = rng.permutation(sets.n_users)
        sizes = counts[order]
        need = int(np.searchsorted(np.cumsum(sizes), batch * n)) + 1
        users = np.repeat(order[:need], sizes[:need]).astype(np.int32)
        starts = sets.offsets[order[:need]]
        rank = np.arange(len(users)) - np.repeat(
            np.cumsum(sizes[:need]) - sizes[:need], sizes[:need]
        )
        items = np.asarray(sets.items)[np.repeat(starts, sizes[:need]) + rank]
    else:
        rows = rng.integers(0, len(sets.items), batch * n)
        users = (np.searchsorted(sets.offsets, rows, side="right") - 1).astype(np.int32)
        items = np.asarray(sets.items)[rows]
    for k in range(n):
        part = slice(k * batch, (k + 1) * batch)
        rating = rng.integers(1, 6, batch).astype(np.float32)
        out.append(({"user": users[part], "item": items[part].astype(np.int32)}, rating))
    return out


def measure(model_name: str, sets: ImplicitSets, data: list, warmup: int, dim: int) -> float:
    """Ratings/s of ``len(data) - warmup`` training steps after ``warmup`` ones."""
    import keras
    import tensorflow as tf

    from cflib.config import TrainConfig
    from cflib.models.catalog import build_model, resolve
    from cflib.train.epochs import compile_model

    cfg = resolve(TrainConfig(model=model_name, embedding_dim=dim, batch_size=len(data[0][1])))
    strategy = tf.distribute.get_strategy()
    model = build_model(
        cfg, n_users=sets.n_users, n_items=sets.n_items, global_mean=3.6,
        implicit=sets if model_name == "svdpp" else None,
    )  # fmt: skip
    compile_model(model, cfg, strategy, len(data))
    keras.utils.set_random_seed(0)
    for x, y in data[:warmup]:
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for x, y in data[warmup:]:
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    return (len(data) - warmup) * len(data[0][1]) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=480_189)
    parser.add_argument("--items", type=int, default=17_770)
    parser.add_argument("--mean", type=float, default=209.0, help="mean |N(u)|")
    parser.add_argument("--batch", type=int, default=16_384)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--random-steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--note", default="")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    t = time.perf_counter()
    sets = draw_sets(args.users, args.items, args.mean, 0)
    drawn = time.perf_counter() - t
    print(f"N(u): {len(sets.items):,} pairs, {args.users:,} users ({drawn:.1f} s)", flush=True)
    rows = []
    window = f"grouped in windows of {GROUP_WINDOW_ROWS:,} rows"
    runs = [
        ("biased-mf", "random", args.steps),
        ("svdpp", "grouped by user", args.steps),
        ("svdpp", window, args.steps),
        ("svdpp", "random", args.random_steps),
    ]
    for model, order, steps in runs:
        data = batches(sets, args.batch, steps + args.warmup, order, 1)
        users = np.mean([len(np.unique(x["user"])) for x, _ in data])
        counts = sets.counts()
        pairs = np.mean([counts[np.unique(x["user"])].sum() for x, _ in data])
        rate = measure(model, sets, data, args.warmup, args.dim)
        print(f"{model} {order}: {rate / 1e6:.3f} M ratings/s", flush=True)
        rows.append(
            f"| {model} | {order} | {users:,.0f} | {pairs:,.0f} | {steps} | {rate / 1e6:.2f} M |"
        )
    cmd = "python bench/svdpp.py " + shlex.join(sys.argv[1:])
    body = f"""Command: `{cmd.strip()}`  
Machine: {machine()}{(". " + args.note) if args.note else ""}  
Shape: {args.users:,} users, {args.items:,} items, N(u) of {len(sets.items):,} (user, item)
pairs (mean |N(u)| {args.mean:g}, log-normal), batch {args.batch:,}, dim {args.dim},
SparseAdagrad, one device, batches in memory, {args.warmup} warm-up steps not timed.

| model | batch order | users per batch | sum of \\|N(u)\\| per batch | steps timed | ratings/s |
|---|---|---:|---:|---:|---:|
{chr(10).join(rows)}
"""
    print(body)
    if not args.no_write:
        write_section("SVD++ step speed", body)


if __name__ == "__main__":
    main()
