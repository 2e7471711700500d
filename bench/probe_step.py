"""Probe: ratings/s of biased-MF training steps alone, on random ids at the Netflix shape.

    .venv/bin/python bench/probe_step.py --variant fused --batch 65536 --per-call 16

Not a benchmark of cfpipe (see bench/train.py): it compares ways to write the step.
Variants: ``split`` (four tables, four gathers and scatters a side pair), ``fused``
(each bias in its factor row: one gather and one scatter a side), ``fused-xla``
(``fused`` with the arithmetic and scatters under XLA), ``op`` (the fused training op of
``cflib.train.fused``, as training runs it: four tables, ``--threads`` of the intra-op
pool, 0 for all).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import tensorflow as tf


def fused_step(u_tab, u_acc, i_tab, i_acc, users, items, ratings, lr, l2, l2b, mu, dim):
    """One step of row-wise Adagrad on fused [p, b, 1] / [q, 1, b] rows."""
    pu = tf.gather(u_tab, users)
    qi = tf.gather(i_tab, items)
    err = tf.reduce_sum(pu * qi, axis=1) + mu - ratings
    e = err[:, None]
    mask_u = tf.constant([1.0] * (dim + 1) + [0.0])
    mask_i = tf.constant([1.0] * dim + [0.0, 1.0])
    reg_u = tf.constant([l2] * dim + [l2b, 0.0])
    reg_i = tf.constant([l2] * dim + [0.0, l2b])
    gu = 2 * (e * qi * mask_u + reg_u * pu)
    gi = 2 * (e * pu * mask_i + reg_i * qi)
    for tab, acc, rows, g, bias_col in (
        (u_tab, u_acc, users, gu, dim),
        (i_tab, i_acc, items, gi, dim + 1),
    ):
        sq = tf.stack(
            [tf.reduce_mean(tf.square(g[:, :dim]), axis=1), tf.square(g[:, bias_col])], axis=1
        )
        acc.scatter_add(tf.IndexedSlices(sq, rows))
        a = tf.gather(acc, rows)
        scale = tf.concat([tf.tile(a[:, :1], [1, dim]), a[:, 1:2], a[:, 1:2]], axis=1)
        tab.scatter_sub(tf.IndexedSlices(lr * g * tf.math.rsqrt(scale + 1e-8), rows))
    return tf.reduce_mean(tf.square(err))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", default="fused")
    p.add_argument("--batch", type=int, default=65536)
    p.add_argument("--per-call", type=int, default=16)
    p.add_argument("--users", type=int, default=480_189)
    p.add_argument("--items", type=int, default=17_770)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--inter", type=int, default=0)
    p.add_argument("--intra", type=int, default=0)
    p.add_argument("--sort", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="the op's threads (0: the pool's)")
    a = p.parse_args()
    if a.inter:
        tf.config.threading.set_inter_op_parallelism_threads(a.inter)
    if a.intra:
        tf.config.threading.set_intra_op_parallelism_threads(a.intra)
    rng = np.random.default_rng(0)
    n = a.steps * a.batch
    users = rng.integers(0, a.users, n).astype(np.int32)
    items = rng.integers(0, a.items, n).astype(np.int32)
    ratings = rng.integers(1, 6, n).astype(np.float32)
    if a.sort:
        for s in range(a.steps):
            sl = slice(s * a.batch, (s + 1) * a.batch)
            o = np.argsort(users[sl], kind="stable")
            users[sl], items[sl], ratings[sl] = users[sl][o], items[sl][o], ratings[sl][o]
    d = a.dim + 2
    u_tab = tf.Variable(rng.normal(0, 0.01, (a.users, d)).astype(np.float32))
    i_tab = tf.Variable(rng.normal(0, 0.01, (a.items, d)).astype(np.float32))
    u_acc = tf.Variable(tf.zeros((a.users, 2)))
    i_acc = tf.Variable(tf.zeros((a.items, 2)))
    ds = tf.data.Dataset.from_tensor_slices(
        (users.reshape(-1, a.batch), items.reshape(-1, a.batch), ratings.reshape(-1, a.batch))
    ).repeat()
    it = iter(ds.prefetch(4))
    xla = a.variant == "fused-xla"
    step = tf.function(fused_step, jit_compile=True) if xla else fused_step
    if a.variant == "op":
        step = op_step(a, rng)

    @tf.function
    def run(it):
        loss = tf.constant(0.0)
        for _ in tf.range(a.per_call):
            u, i, r = next(it)
            loss = step(u_tab, u_acc, i_tab, i_acc, u, i, r, 0.05, 0.05, 0.005, 3.6, a.dim)
        return loss

    run(it)
    calls = a.steps // a.per_call
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        loss = run(it)
    float(loss)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    n = calls * a.per_call * a.batch
    print(
        f"{a.variant} batch {a.batch} per-call {a.per_call} sort {a.sort} inter {a.inter} "
        f"intra {a.intra} threads {a.threads}: {n / dt / 1e6:.2f} M ratings/s, "
        f"{n / cpu / 1e6:.2f} M per CPU-second (load {os.getloadavg()[0]:.1f})"
    )


def op_step(a: argparse.Namespace, rng: np.random.Generator):  # noqa: ANN201
    """A step of the fused op on four tables of its own (the variant ``op``)."""
    from cflib.train import fused

    op = fused.load()
    if op is None:
        raise SystemExit("the fused op is not built: make op")
    shapes = [(a.users, a.dim), (a.items, a.dim), (a.users, 1), (a.items, 1)]
    tables = [tf.Variable(rng.normal(0, 0.01, s).astype(np.float32)) for s in shapes]
    accs = [tf.Variable(tf.zeros((s[0], 1))) for s in shapes]

    def step(*args):  # noqa: ANN002, ANN202
        u, i, r = args[4:7]
        pred, _ = op.cfpipe_mf_adagrad_step(
            tables=[t.handle for t in tables], accumulators=[v.handle for v in accs],
            users=u, items=i, ratings=r, learning_rate=0.05, l2=[0.05, 0.05, 0.005, 0.005],
            global_mean=3.6, threads=a.threads,
        )  # fmt: skip
        return tf.reduce_mean(tf.square(pred - r))

    return step


if __name__ == "__main__":
    main()
