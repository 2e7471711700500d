"""Handing the chosen trial over to the run (cflib.train.kept.hand_over): the run's state
as after the trial's epochs, its best epoch's weights written, the model left as the
trial left it, and a checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.models.catalog import build_model, resolve
from cflib.train.checkpoint import BEST_WEIGHTS, Checkpointer, TrainState, read_state
from cflib.train.epochs import compile_model
from cflib.train.kept import TrialRecord, hand_over
from tests._training import random_batches


def _model() -> keras.Model:
    cfg = resolve(TrainConfig(embedding_dim=4, batch_size=50, l2=0.05))
    keras.utils.set_random_seed(1)
    model = build_model(cfg, n_users=40, n_items=30, global_mean=3.0)
    compile_model(model, cfg, tf.distribute.get_strategy(), train_batches=3)
    return model


def test_the_run_goes_on_from_the_trial(tmp_path: Path) -> None:
    model = _model()
    model.fit(random_batches(40, 30, 50, 3, seed=0), epochs=1, verbose=0)
    variables = [*model.weights, *model.optimizer.variables]
    best = [np.array(v) for v in variables]  # "epoch 1", the best
    model.fit(random_batches(40, 30, 50, 3, seed=1), epochs=2, verbose=0)
    now = [np.array(v) for v in variables]  # epoch 3, as the trial left it
    record = TrialRecord(
        history={"loss": [1.0, 0.9, 0.8], "val_rmse": [0.95, 0.91, 0.93]},
        train_seconds=[0.5, 0.1, 0.1], rows_trained=450, first_loss=1.2, best_epoch=1,
        best_state=best,
    )  # fmt: skip
    state = TrainState()
    checkpointer = Checkpointer(tmp_path, state, every_steps=0)
    checkpointer.set_model(model)
    hand_over(model, record, state, checkpointer)
    assert (state.epoch, state.batch, state.steps) == (3, 0, 9)
    assert (state.best_epoch, state.best_val_rmse, state.wait) == (1, 0.91, 1)
    assert state.history == record.history and state.train_seconds == [0.5, 0.1, 0.1]
    assert (state.rows_trained, state.first_loss) == (450, 1.2)
    for variable, value in zip(variables, now, strict=True):  # left as the trial left it
        np.testing.assert_array_equal(np.array(variable), value)
    # The checkpoint names this state and these weights; the best file holds "epoch 1".
    saved = read_state(tmp_path)
    assert saved is not None and saved.epoch == 3 and saved.weights == state.weights
    other = _model()
    other.optimizer.build(other.trainable_variables)
    other.load_weights(tmp_path / BEST_WEIGHTS)
    for variable, value in zip(other.weights, best, strict=False):
        np.testing.assert_array_equal(np.array(variable), value)
    assert not any(p.name.endswith(".tmp.weights.h5") for p in tmp_path.iterdir())
