"""The row step (cflib.train.rowstep) makes the same updates as Keras' step with
SparseAdagrad, and is used only where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.models.catalog import build_model, resolve
from cflib.train import rowstep
from cflib.train.epochs import compile_model
from tests._training import random_batches

N_USERS, N_ITEMS, BATCH = 60, 25, 32


def _fit(cfg: TrainConfig, row_step: bool) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    strategy = tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(7)
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.5)
    compile_model(model, cfg, strategy, train_batches=5)
    assert (model.row_step is not None) is rowstep.supports(model, strategy)
    if not row_step:
        model.row_step = None  # Keras' own train_step
    history = model.fit(
        random_batches(N_USERS, N_ITEMS, BATCH, 5, seed=0), epochs=2, verbose=0, shuffle=False
    )
    opt = [np.array(v) for v in model.optimizer.variables]
    return [np.array(w) for w in model.get_weights()], opt, history.history


@pytest.mark.parametrize(("model", "schedule"), [("biased-mf", "constant"), ("dot", "exponential")])
def test_row_step_updates_as_keras_does(model: str, schedule: str) -> None:
    cfg = resolve(
        TrainConfig(
            model=model,
            embedding_dim=4,
            batch_size=BATCH,
            learning_rate=0.2,
            l2=0.05,
            l2_bias=0.01,
            lr_schedule=schedule,
        )  # fmt: skip
    )
    weights, opt, logs = _fit(cfg, row_step=True)
    keras_weights, keras_opt, keras_logs = _fit(cfg, row_step=False)
    assert len(weights) == len(keras_weights)
    for ours, theirs in zip(weights, keras_weights, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    # Accumulators and the step count (iterations is among the optimizer's variables).
    for ours, theirs in zip(opt, keras_opt, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert int(opt[0]) == 10  # 2 epochs of 5 batches
    for key in ("loss", "rmse"):
        np.testing.assert_allclose(logs[key], keras_logs[key], rtol=1e-5)
    assert logs["loss"][1] < logs["loss"][0]  # it trains


def test_row_step_only_where_it_applies() -> None:
    base = TrainConfig(embedding_dim=4, batch_size=BATCH, epochs=1)
    default = tf.distribute.get_strategy()

    def compiled(cfg: TrainConfig, strategy: tf.distribute.Strategy = default) -> object:
        cfg = resolve(cfg)
        with strategy.scope():
            model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.5)
        compile_model(model, cfg, strategy, train_batches=5)
        return model.row_step

    assert compiled(base.model_copy(update={"model": "biased-mf"})) is not None
    # Adam updates every row: Keras' step.
    assert compiled(base.model_copy(update={"model": "biased-mf", "optimizer": "adam"})) is None
    # Dense layers besides the tables: Keras' step.
    assert compiled(base.model_copy(update={"model": "residual"})) is None
    # A mirrored strategy (even of one device) sums the replicas' gradients: Keras' step.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert compiled(base.model_copy(update={"model": "biased-mf"}), mirrored) is None
