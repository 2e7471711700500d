"""The fused training op (cflib.train.fused) makes the TensorFlow row step's update."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.models.catalog import build_model, resolve
from cflib.train import fused, rowstep
from cflib.train.epochs import compile_model
from tests._training import random_batches

N_USERS, N_ITEMS, BATCH = 60, 25, 32


@pytest.fixture(scope="module")
def op() -> Iterator[object]:
    """The op, built here if the install step has not (as ``make install`` would)."""
    fused.build()
    fused.load.cache_clear()
    module = fused.load()
    assert module is not None, "the fused op was built but did not load"
    yield module


def _fit(cfg: TrainConfig, use_op: bool) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    tf.keras.utils.set_random_seed(7)
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.5)
    compile_model(model, cfg, tf.distribute.get_strategy(), train_batches=5)
    assert model.row_step is not None and model.row_step.fused is not None
    if not use_op:
        model.row_step.fused = None  # the TensorFlow row step
    history = model.fit(
        random_batches(N_USERS, N_ITEMS, BATCH, 5, seed=3), epochs=2, verbose=0, shuffle=False
    )
    opt = [np.array(v) for v in model.optimizer.variables]
    return [np.array(w) for w in model.get_weights()], opt, history.history


@pytest.mark.parametrize(("model", "schedule"), [("biased-mf", "constant"), ("dot", "cosine")])
def test_the_op_updates_as_the_tensorflow_row_step_does(
    op: object, model: str, schedule: str
) -> None:
    cfg = resolve(
        TrainConfig(
            model=model,
            embedding_dim=5,
            batch_size=BATCH,
            learning_rate=0.2,
            l2=0.05,
            l2_bias=0.01,
            lr_schedule=schedule,
            epochs=2,
        )  # fmt: skip
    )
    weights, opt, logs = _fit(cfg, use_op=True)
    tf_weights, tf_opt, tf_logs = _fit(cfg, use_op=False)
    for ours, theirs in zip([*weights, *opt], [*tf_weights, *tf_opt], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert int(opt[0]) == 10  # the step count: 2 epochs of 5 batches
    for key in ("loss", "rmse"):
        np.testing.assert_allclose(logs[key], tf_logs[key], rtol=1e-5)
    assert logs["loss"][1] < logs["loss"][0]


def _tables(rng: np.random.Generator, dim: int) -> tuple[list[tf.Variable], list[tf.Variable]]:
    shapes = [(N_USERS, dim), (N_ITEMS, dim), (N_USERS, 1), (N_ITEMS, 1)]
    tables = [tf.Variable(rng.normal(0, 0.1, s).astype(np.float32)) for s in shapes]
    accs = [tf.Variable(rng.uniform(0, 1, (s[0], 1)).astype(np.float32)) for s in shapes]
    return tables, accs


def _step(op: object, threads: int, users: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
    tables, accs = _tables(np.random.default_rng(1), dim=7)
    ratings = np.linspace(1, 5, len(users)).astype(np.float32)
    pred, penalty = op.cfpipe_mf_adagrad_step(  # type: ignore[attr-defined]
        tables=[t.handle for t in tables], accumulators=[a.handle for a in accs],
        users=users, items=items, ratings=ratings, learning_rate=0.1,
        l2=[0.05, 0.04, 0.01, 0.02], global_mean=3.5, threads=threads,
    )  # fmt: skip
    return [pred.numpy(), penalty.numpy(), *[v.numpy() for v in [*tables, *accs]]]


def test_every_thread_count_gives_the_same_update(op: object) -> None:
    """Rows are shared out among threads by id: 1, 2 and 3 threads make one update."""
    rng = np.random.default_rng(2)
    users = rng.integers(0, N_USERS, 500).astype(np.int32)
    items = rng.integers(0, 4, 500).astype(np.int32)  # a few items, each looked up often
    one = _step(op, 1, users, items)
    for threads in (2, 3):
        for ours, theirs in zip(_step(op, threads, users, items), one, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    before = _step(op, 1, users[:0], items[:0])  # an empty batch changes nothing
    tables, accs = _tables(np.random.default_rng(1), dim=7)
    for ours, theirs in zip(before[2:], [v.numpy() for v in [*tables, *accs]], strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_an_id_outside_the_tables_is_an_error_naming_it(op: object) -> None:
    users = np.array([0, N_USERS], np.int32)
    items = np.array([1, 2], np.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"lookup 1 .*user {N_USERS} "):
        _step(op, 2, users, items)


def test_the_op_serves_only_where_it_applies(op: object, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve(TrainConfig(model="biased-mf", embedding_dim=4, batch_size=BATCH, epochs=1))
    strategy = tf.distribute.get_strategy()
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.5)
    compile_model(model, cfg, strategy, train_batches=5)
    assert isinstance(model.row_step.fused, rowstep.FusedStep)
    # Switched off, or a model without a fused form: the TensorFlow row step.
    monkeypatch.setenv(fused.ENV_SWITCH, "0")
    assert fused.load.__wrapped__() is None
    residual = build_model(
        resolve(cfg.model_copy(update={"model": "residual"})), n_users=N_USERS,
        n_items=N_ITEMS, global_mean=3.5,
    )  # fmt: skip
    assert rowstep.FusedStep.of(residual) is None


def test_a_failed_build_leaves_no_library_and_says_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cflib.train.fused", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "CXX": "/bin/false"}, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert lines == [lines[0]] and "building the fused op failed (/bin/false)" in lines[0]
    assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.iterdir())


def test_a_cpu_with_avx512_fp16_builds_without_it() -> None:
    # TensorFlow's Eigen does not compile with AVX512-FP16 on (the op's fixture above
    # builds on such a CPU where the machine has one).
    plain = "flags\t\t: fpu sse2 avx2 avx512f avx512bw"
    assert fused.cxx_flags(plain) == fused.CXX_FLAGS
    assert fused.cxx_flags(f"{plain} avx512_fp16") == (*fused.CXX_FLAGS, fused.NO_FP16)
    assert fused.cxx_flags("flags\t\t: avx512_fp16x") == fused.CXX_FLAGS


def _svdpp_fit(use_op: bool) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    from cflib.data.implicit import ImplicitSets

    rng = np.random.default_rng(4)
    sets = [rng.choice(N_ITEMS, rng.integers(0, 9), replace=True) for _ in range(N_USERS)]
    offsets = np.cumsum([0, *map(len, sets)]).astype(np.int64)
    csr = ImplicitSets(offsets, np.concatenate(sets).astype(np.int32), N_ITEMS)
    cfg = resolve(
        TrainConfig(
            model="svdpp",
            embedding_dim=4,
            batch_size=BATCH,
            learning_rate=0.2,
            l2=0.05,
            l2_bias=0.01,
            epochs=2,
        )  # fmt: skip
    )
    tf.keras.utils.set_random_seed(7)
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.5, implicit=csr)
    compile_model(model, cfg, tf.distribute.get_strategy(), train_batches=5)
    assert model.row_step is not None and model.row_step.fused is not None
    if not use_op:
        model.row_step = None  # Keras' own train_step
    data = random_batches(N_USERS, N_ITEMS, BATCH, 5, seed=5)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    opt = [np.array(v) for v in model.optimizer.variables]
    return [np.array(w) for w in model.get_weights()], opt, history.history


def test_the_svdpp_op_updates_as_keras_step_does(op: object) -> None:
    """N(u) with repeated items and users with none; every table and accumulator."""
    weights, opt, logs = _svdpp_fit(use_op=True)
    keras_weights, keras_opt, keras_logs = _svdpp_fit(use_op=False)
    for ours, theirs in zip([*weights, *opt], [*keras_weights, *keras_opt], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-6)
    for key in ("loss", "rmse"):
        np.testing.assert_allclose(logs[key], keras_logs[key], rtol=1e-5)
    assert logs["loss"][1] < logs["loss"][0]
