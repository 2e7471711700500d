"""Several training steps a call of Keras' train function (``steps_per_execution``): the
same training, and the checkpoints, state and epoch line count steps, not calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.models.catalog import build_model, resolve
from cflib.train.checkpoint import Checkpointer, TrainState
from cflib.train.epochs import compile_model, steps_per_execution
from cflib.train.progress import EpochLogger

N_USERS, N_ITEMS, BATCH, BATCHES = 40, 15, 16, 10


def test_steps_a_call_follow_the_batch_the_epoch_and_the_checkpoints() -> None:
    def k(batch: int, batches: int, checkpoint_steps: int = 1000) -> int:
        cfg = TrainConfig(batch_size=batch, checkpoint_steps=checkpoint_steps)
        return steps_per_execution(cfg, batches)

    assert k(16_384, 572) == 8  # 10M ratings: 8 steps of 16,384 a call
    assert k(65_536, 1_433) == 2  # 2 x 65,536 = 131,072 ratings a call
    assert k(262_144, 1_000) == 1
    assert k(16_384, 12) == 1  # 200K ratings: the guard looks after every step
    assert k(16_384, 300) == 4  # at least 64 calls an epoch
    assert k(16_384, 572, checkpoint_steps=6) == 6  # a divisor of the checkpoint interval
    assert k(16_384, 572, checkpoint_steps=7) == 7
    assert k(16_384, 572, checkpoint_steps=0) == 8


def _fit(k: int, directory: Path) -> tuple[list[np.ndarray], TrainState, int, list[int]]:
    cfg = resolve(
        TrainConfig(model="biased-mf", embedding_dim=3, batch_size=BATCH, learning_rate=0.1)
    )
    tf.keras.utils.set_random_seed(5)
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.0)
    compile_model(model, cfg, tf.distribute.get_strategy(), train_batches=BATCHES)
    model.steps_per_execution, model.train_function = k, None
    rng = np.random.default_rng(0)
    n = BATCH * BATCHES
    x = {"user": rng.integers(0, N_USERS, n).astype(np.int32),
         "item": rng.integers(0, N_ITEMS, n).astype(np.int32)}  # fmt: skip
    data = tf.data.Dataset.from_tensor_slices((x, rng.uniform(1, 5, n).astype(np.float32)))
    state = TrainState()
    directory.mkdir()
    checkpointer = Checkpointer(directory, state, every_steps=4)
    saved: list[int] = []
    original = checkpointer.save

    def save() -> None:
        saved.append(state.steps)
        original()

    checkpointer.save = save  # type: ignore[method-assign]
    timer = EpochLogger(BATCH, state)
    model.fit(
        data.batch(BATCH), epochs=1, verbose=0, shuffle=False, callbacks=[checkpointer, timer]
    )
    return [np.array(w) for w in model.get_weights()], state, timer.batches, saved


def test_three_steps_a_call_train_and_count_as_one_step_a_call(tmp_path: Path) -> None:
    one: Any = _fit(1, tmp_path / "one")
    three: Any = _fit(3, tmp_path / "three")
    for a, b in zip(one[0], three[0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for _, state, batches, _saved in (one, three):
        # 10 batches: calls of 3, 3, 3 and 1 step; Keras says 12 after the last.
        assert (state.batch, state.steps, batches) == (BATCHES, BATCHES, BATCHES)
    assert one[3] == [4, 8]
    assert three[3] == [6, 9]  # the first call past each multiple of 4 steps
