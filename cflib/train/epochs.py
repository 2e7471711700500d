"""The epoch loop: one ``fit`` per epoch, early stopping, and recovery from divergence.

``cflib.train.loop`` sets a run up (run directory, strategy, inputs, model, callbacks)
and hands it here. Everything in this module works around ``fit``, never inside a
training step: the step itself may change (a faster one) without touching it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.errors import TrainingDiverged
from cflib.models.losses import squared_error
from cflib.train import guard
from cflib.train.checkpoint import (
    BEST_WEIGHTS,
    CHECKPOINT_DIR,
    Checkpointer,
    EpochLogger,
    TrainState,
)
from cflib.train.distribute import DistributedValidation
from cflib.train.inputs import TrainInputs
from cflib.train.optim import make_optimizer

log = logging.getLogger(__name__)

OnEpoch = Callable[[int, int, dict[str, float]], None]


@dataclass
class Run:
    """The run directory trained into, and where training stands in it."""

    out_dir: Path
    run_id: str
    state: TrainState
    resumed: dict[str, int] | None  # from which epoch and batch (1-based epoch)
    chief: bool  # the one process that writes the run directory

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR


@dataclass
class Fit:
    """What each epoch's ``fit`` runs with."""

    model: keras.Model
    strategy: tf.distribute.Strategy
    inputs: TrainInputs
    validate: DistributedValidation | None  # across workers; else Keras validates
    checkpointer: Checkpointer
    timer: EpochLogger
    callbacks: list[keras.callbacks.Callback]


def compile_model(
    model: keras.Model,
    cfg: TrainConfig,
    strategy: tf.distribute.Strategy,
    train_batches: int,
    lr_scale: float = 1.0,
) -> None:
    """Compile ``model`` in the strategy's scope, at ``lr_scale`` times the learning rate,
    and build its optimizer (its variables exist before the first step, to be saved)."""
    assert cfg.learning_rate is not None
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(cfg, cfg.learning_rate * lr_scale, train_batches),
            loss=squared_error,  # not MeanSquaredError: see cflib.models.losses
            metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
            jit_compile=False,  # the model compiles its own arithmetic (DotModel.call)
        )
        model.optimizer.build(model.trainable_variables)


def set_lr_scale(fit: Fit, cfg: TrainConfig, lr_scale: float) -> None:
    """Recompile with a new optimizer at ``lr_scale`` times the learning rate, keeping the
    optimizer's state (step count, accumulators); a schedule restarts at the scaled rate
    where the step count stands."""
    model = fit.model
    kept = {i: v.numpy() for i, v in enumerate(model.optimizer.variables)}
    compile_model(model, cfg, fit.strategy, fit.inputs.train_batches, lr_scale)
    for i, variable in enumerate(model.optimizer.variables):
        if variable.name != "learning_rate":  # a constant rate's variable: the new one
            variable.assign(kept[i])


def fit_epochs(
    fit: Fit, run: Run, cfg: TrainConfig, train_rows: int, on_epoch: OnEpoch | None
) -> None:
    """Epochs until ``cfg.epochs`` or early stopping; the best weights kept, a checkpoint
    after each. A diverged epoch is trained again from its start at half the learning
    rate (``cflib.train.guard``).

    Raises:
        TrainingDiverged: an epoch diverged after ``guard.MAX_RETRIES`` restarts.
    """
    assert cfg.batch_size is not None
    state = run.state
    val_ds = None if fit.validate else fit.inputs.validation()
    while state.epoch < cfg.epochs and not should_stop(state, cfg.patience):
        fit.checkpointer.stop_if_requested()  # asked between epochs (during validation)
        epoch = state.epoch
        start = guard.Snapshot.take(fit.model, state)
        try:
            logs = _fit_epoch(fit, state, val_ds)
            guard.check_epoch(state, logs)
        except guard.Diverged as diverged:
            _recover(fit, cfg, start, diverged)
            continue
        rows = min(fit.timer.batches * cfg.batch_size, train_rows)
        if state.end_epoch(logs, fit.timer.train_seconds, rows) and run.chief:
            fit.model.save_weights(run.ckpt_dir / BEST_WEIGHTS)
        fit.checkpointer.save()
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, logs)


def _fit_epoch(fit: Fit, state: TrainState, val_ds: Any) -> dict[str, float]:
    """One epoch of ``fit`` from where ``state`` stands; its logs, validation included."""
    epoch, skip = state.epoch, state.batch
    inputs = fit.inputs
    with fit.strategy.scope(), warnings.catch_warnings():
        # The train split's batch count is left undeclared (see make_dataset), so
        # Keras warns when a one-epoch fit reaches its end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fitted = fit.model.fit(
            inputs.train(epoch, skip),
            validation_data=None if fit.validate else val_ds,
            initial_epoch=epoch,
            epochs=epoch + 1,
            steps_per_epoch=inputs.train_batches - skip if inputs.cluster else None,
            validation_steps=None if fit.validate else inputs.val_steps,
            callbacks=fit.callbacks,
            shuffle=False,  # make_dataset shuffles; Keras cannot shuffle a tf.data.Dataset
            verbose=0,
        )
    logs = {k: v[-1] for k, v in fitted.history.items()}
    if fit.validate is not None:
        with fit.strategy.scope():
            logs.update(fit.validate(fit.model))
        log.info("epoch %d: val_rmse %.4f over every worker's shard", epoch + 1, logs["val_rmse"])
    return logs


def _recover(fit: Fit, cfg: TrainConfig, start: guard.Snapshot, diverged: guard.Diverged) -> None:
    """Back to the epoch's start at half the learning rate, with a warning and a
    checkpoint; or, after ``guard.MAX_RETRIES`` restarts, the end of training.

    Raises:
        TrainingDiverged: this was the divergence after the last restart.
    """
    assert cfg.learning_rate is not None
    state = fit.checkpointer.state
    lr = cfg.learning_rate * state.lr_scale
    where = f"epoch {diverged.epoch + 1}, batch {diverged.batch}"
    if len(state.divergences) >= guard.MAX_RETRIES:
        raise TrainingDiverged(
            f"training diverged at {where} ({diverged.reason}) after {guard.MAX_RETRIES} "
            f"restarts with the learning rate halved each time, to {lr:g}; "
            f"lower --learning-rate (now {cfg.learning_rate:g}) or --batch-size, into a new --out"
        ) from None  # the message says all that the Diverged being handled does
    start.restore(fit.model, state)
    state.lr_scale /= 2
    set_lr_scale(fit, cfg, state.lr_scale)
    loss = diverged.loss if math.isfinite(diverged.loss) else None  # JSON has no NaN
    state.divergences.append({
        "epoch": diverged.epoch + 1, "batch": diverged.batch, "loss": loss,
        "reason": diverged.reason, "learning_rate": lr / 2,
    })  # fmt: skip
    back = f"epoch {state.epoch + 1}" + (f", batch {state.batch}" if state.batch else "")
    log.warning(
        "training diverged at %s (%s): restarting from %s with the learning rate halved "
        "to %g (restart %d of %d)",
        where, diverged.reason, back, lr / 2, len(state.divergences), guard.MAX_RETRIES,
    )  # fmt: skip
    fit.checkpointer.save()


def should_stop(state: TrainState, patience: int) -> bool:
    """Early stopping: ``patience`` epochs in a row without a better validation RMSE."""
    return state.wait > 0 and state.wait >= patience
