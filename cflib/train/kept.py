"""The chosen trial's model, carried on by the run: its epochs are the fit phase's first.

A trial (``cflib.train.tune.trial``) trains its candidate from the seeded initial weights
on the train split, in the run's batch order and with the run's optimizer, and stops at
the first epoch that does not improve the validation RMSE or at ``TRIAL_EPOCHS``. Those
are the very epochs the fit phase would train first for the chosen values, and the fit
phase would stop where the trial stopped only if its patience were 1. So the chosen
trial's model, weights and optimizer state as the trial left them, is where the run's fit
phase goes on from (``hand_over``): its history, best epoch and patience count, its best
epoch's weights written as the run's, and a checkpoint, as if the run had trained those
epochs itself (``tests/train/test_tune.py`` checks the same epochs and RMSEs as a run
without a search). Models up to ``KEEP_BYTES`` are kept (the Netflix shape's tables at 64
factors, with their optimizer state, are 260 MB); a larger chosen trial's run trains its
fit phase from the start.
"""

from __future__ import annotations

import gc
import math
import os
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.logs import stage_logger
from cflib.train import stop
from cflib.train.checkpoint import BEST_WEIGHTS, Checkpointer, TrainState, optimizer_steps
from cflib.train.progress import EpochLogger

log = stage_logger("train")

#: A trial's model at least this large (weights and optimizer variables) is collected
#: before the next trial builds its own: two Netflix-sized models at once double the
#: memory. Smaller ones are left to Python's collector: a full collection of the heap
#: TensorFlow leaves behind costs 0.1-1 s, several times a small trial's epoch.
COLLECT_BYTES = 64 << 20
#: The largest model (weights and optimizer variables) kept for the run to go on from:
#: while later trials train, it and a copy of its best epoch's state are held beside
#: theirs, so the search's peak memory is about three times this above one model's.
KEEP_BYTES = 1 << 30


def model_bytes(model: keras.Model) -> int:
    """Bytes of the model's weights and optimizer variables."""
    variables = [*model.weights, *model.optimizer.variables]
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)


def collect(model: keras.Model) -> None:
    """Let go of a trial's model, with a full collection if it is large."""
    size = model_bytes(model)
    del model
    if size >= COLLECT_BYTES:
        gc.collect()


def _arrays(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v) for v in [*model.weights, *model.optimizer.variables]]


def _assign(model: keras.Model, arrays: list[np.ndarray]) -> None:
    for variable, value in zip([*model.weights, *model.optimizer.variables], arrays, strict=True):
        variable.assign(value)


@dataclass
class TrialRecord:
    """A trial's epochs as the run's state records them (``TrainState``)."""

    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: list[float] = field(default_factory=list)
    rows_trained: int = 0
    first_loss: float | None = None
    best_epoch: int = -1  # 0-based
    best_state: list[np.ndarray] | None = None  # weights and optimizer, at the best epoch


class TrialScores(keras.callbacks.Callback):
    """A trial's epochs: its best validation RMSE so far, and training stopped at the first
    epoch that does not improve it (or is not finite), or at the next batch once a stop is
    requested (a trial keeps no checkpoint: the run resumes at the start of the trial).
    With ``timer`` (an ``EpochLogger`` that logs nothing, before this in the callbacks)
    and a small model, ``record`` holds what ``hand_over`` needs."""

    def __init__(self, timer: EpochLogger | None = None, rows_per_batch: int = 0) -> None:
        super().__init__()
        self.best, self.epochs = math.inf, 0
        self.timer, self.rows_per_batch = timer, rows_per_batch
        self.record: TrialRecord | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        small = model_bytes(self.model) <= KEEP_BYTES
        self.record = TrialRecord() if self.timer is not None and small else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        val = float(logs.get("val_rmse", math.nan))
        self.epochs = epoch + 1
        if (record := self.record) is not None and self.timer is not None:
            for key, value in logs.items():
                record.history.setdefault(key, []).append(float(value))
            record.train_seconds.append(self.timer.train_seconds)
            record.rows_trained += self.timer.batches * self.rows_per_batch
        if val < self.best:
            self.best = val
            if record is not None:
                record.best_epoch, record.best_state = epoch, _arrays(self.model)
        else:  # no better, or not finite
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        record = self.record
        if record is not None and record.first_loss is None and logs and "loss" in logs:
            loss = float(logs["loss"])
            record.first_loss = loss if math.isfinite(loss) else None
        if stop.requested() is not None:
            self.model.stop_training = True


class Kept:
    """The compiled model of the best trial so far, if it is small (``KEEP_BYTES``),
    and its trial's record: for the run to go on from when that trial's values are
    chosen (its step is traced and its updates compiled already, its first epochs run)."""

    def __init__(self) -> None:
        self.cfg: TrainConfig | None = None
        self.model: keras.Model | None = None
        self.record: TrialRecord | None = None
        self.val_rmse = math.inf

    def offer(self, cfg: TrainConfig, model: keras.Model, scores: TrialScores) -> bool:
        """Keep ``model`` if its trial is the best so far (not on a tie: the search takes
        the earlier trial), it is small and its record is whole; whether it was kept."""
        record = scores.record
        if not scores.best < self.val_rmse or record is None or record.best_state is None:
            return False
        if self.model is not None:  # let go of the one it replaces first
            size, self.model, self.record = model_bytes(self.model), None, None
            if size >= COLLECT_BYTES:
                gc.collect()
        self.cfg, self.model, self.record, self.val_rmse = cfg, model, record, scores.best
        return True

    def take(
        self, cfg: TrainConfig, strategy: tf.distribute.Strategy
    ) -> tuple[keras.Model, TrialRecord] | None:
        """The kept model as its trial left it, with the trial's record, if the trial
        trained ``cfg``; else None. Either way nothing is kept any more."""
        model, record, self.model, self.record = self.model, self.record, None, None
        if model is None or record is None or self.cfg != cfg:
            return None
        if not model.xla and strategy.num_replicas_in_sync == 1:  # validated without XLA
            model.xla, model.test_function = True, None  # traced again, with it
        return model, record


def hand_over(
    model: keras.Model, record: TrialRecord, state: TrainState, checkpointer: Checkpointer
) -> None:
    """Make the trial's epochs the fit phase's first: ``state`` as after them, the best
    epoch's weights written as ``BEST_WEIGHTS``, and a checkpoint."""
    assert record.best_state is not None
    epochs = len(record.train_seconds)
    state.epoch, state.batch, state.steps = epochs, 0, optimizer_steps(model)
    state.history = {k: list(v) for k, v in record.history.items()}
    state.train_seconds = list(record.train_seconds)
    state.rows_trained, state.first_loss = record.rows_trained, record.first_loss
    state.best_epoch, state.wait = record.best_epoch, epochs - 1 - record.best_epoch
    state.best_val_rmse = state.history["val_rmse"][record.best_epoch]
    if checkpointer.write:
        now = _arrays(model)
        _assign(model, record.best_state)
        best = checkpointer.directory / BEST_WEIGHTS
        tmp = best.with_name(f"{BEST_WEIGHTS}.tmp.weights.h5")  # Keras wants the suffix
        model.save_weights(tmp)
        os.replace(tmp, best)
        _assign(model, now)
    checkpointer.save()
    log.info(
        "fit phase: the chosen trial's %d epochs are its first (best: epoch %d, validation "
        "RMSE %.4f)", epochs, record.best_epoch + 1, state.best_val_rmse,
    )  # fmt: skip
