"""The epoch loop: one ``fit`` per epoch, early stopping, the refit, divergence restarts.

``cflib.train.loop`` sets a run up (run directory, strategy, inputs, model, callbacks)
and hands it here. Training has two phases (``TrainState.phase``): ``fit`` trains on the
train split and stops early on the validation RMSE; ``refit`` (``--refit``, the default)
then trains the model again from its initial weights on train + validation for the
best epoch's count of epochs, and that model is the run's. Everything in this module
works around ``fit``, never inside a training step: the step itself may change (a
faster one) without touching it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.errors import TrainingDiverged
from cflib.logs import stage_logger
from cflib.models.losses import squared_error
from cflib.train import guard, rowstep
from cflib.train.checkpoint import (
    CHECKPOINT_DIR,
    Checkpointer,
    TrainState,
)
from cflib.train.distribute import DistributedValidation
from cflib.train.inputs import TrainInputs
from cflib.train.optim import make_optimizer
from cflib.train.progress import EpochLogger, ProgressBar
from cflib.train.valpred import HeldValidation

log = stage_logger("train")

OnEpoch = Callable[[int, int, dict[str, float]], None]

#: Ratings a call of the train function covers with the row step (``steps_per_execution``).
EXECUTION_ROWS = 1 << 17
MAX_STEPS_PER_EXECUTION = 8
#: The divergence guard looks at the loss between calls: at least this often an epoch.
MIN_CALLS_PER_EPOCH = 64


@dataclass
class Run:
    """The run directory trained into, and where training stands in it."""

    out_dir: Path
    run_id: str
    state: TrainState
    resumed: dict[str, Any] | None  # from which epoch (1-based), batch and phase
    chief: bool  # the one process that writes the run directory

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR


#: The splits each phase trains on (``TrainState.phase``).
FIT_ON = {"fit": ("train",), "refit": ("train", "validation")}


@dataclass
class Fit:
    """What each epoch's ``fit`` runs with, and how to set up the refit phase."""

    model: keras.Model
    strategy: tf.distribute.Strategy
    inputs: TrainInputs
    validate: DistributedValidation | None  # across workers; else Keras validates
    checkpointer: Checkpointer
    timer: EpochLogger
    callbacks: list[keras.callbacks.Callback]
    make_inputs: Callable[[tuple[str, ...]], TrainInputs]  # the inputs over these splits
    initial_weights: Callable[[], list[np.ndarray]]  # the model's seeded initial weights
    # After the fit phase, before any refit: the best epoch's validation predictions.
    on_fit_end: Callable[[], None] | None = None


def tensorboard(log_dir: Path, phase: str) -> keras.callbacks.TensorBoard:
    """TensorBoard logs under ``log_dir``, the refit's in ``log_dir/refit`` (its epochs
    count from 1 again)."""
    where = log_dir / "refit" if phase == "refit" else log_dir
    return keras.callbacks.TensorBoard(where, write_graph=False, profile_batch=0)


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
    if rowstep.install(model, strategy):
        model.steps_per_execution = steps_per_execution(cfg, train_batches)


def steps_per_execution(cfg: TrainConfig, train_batches: int) -> int:
    """Training steps per call of Keras' train function with the row step: enough for
    about ``EXECUTION_ROWS`` ratings, at most ``MAX_STEPS_PER_EXECUTION``, at least
    ``MIN_CALLS_PER_EPOCH`` calls an epoch, and a divisor of ``cfg.checkpoint_steps``
    (checkpoints stay where they were). Callbacks (the checkpoints, the divergence guard,
    stop requests) run between calls: per step, Keras' Python around a millisecond step
    cost up to half the epoch's time (BENCHMARKS.md)."""
    assert cfg.batch_size is not None
    k = min(MAX_STEPS_PER_EXECUTION, EXECUTION_ROWS // cfg.batch_size)
    k = max(1, min(k, train_batches // MIN_CALLS_PER_EPOCH))
    if cfg.checkpoint_steps:
        while cfg.checkpoint_steps % k:
            k -= 1
    return k


def restart_optimizer(
    model: keras.Model,
    cfg: TrainConfig,
    strategy: tf.distribute.Strategy,
    train_batches: int,
    lr_scale: float = 1.0,
) -> bool:
    """Put the compiled ``model``'s optimizer variables back to those of a new optimizer
    at ``lr_scale`` times the learning rate, in place, and return True; or return False
    where the rate is a schedule (its steps per epoch, ``train_batches``, are part of the
    traced step) or the optimizer is another kind. In place, the traced step and the
    optimizer's compiled update are kept: ``compile_model`` would trace and compile them
    again, about a second on 2 cores (BENCHMARKS.md, "Small data")."""
    assert cfg.learning_rate is not None
    if cfg.lr_schedule != "constant":
        return False
    with strategy.scope():
        fresh = make_optimizer(cfg, cfg.learning_rate * lr_scale, train_batches)
        fresh.build(model.trainable_variables)
    old, new = model.optimizer.variables, fresh.variables
    if type(fresh) is not type(model.optimizer) or [v.shape for v in old] != [v.shape for v in new]:
        return False
    for variable, value in zip(old, new, strict=True):
        variable.assign(value)
    return True


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


def train_phases(fit: Fit, run: Run, cfg: TrainConfig, on_epoch: OnEpoch | None) -> None:
    """The fit phase (unless a resumed run is past it), then with ``cfg.refit`` the refit.

    Raises:
        TrainingDiverged: an epoch diverged after ``guard.MAX_RETRIES`` restarts.
    """
    state = run.state
    if state.phase == "fit":
        _epochs(fit, run, cfg, on_epoch, validate=True)
        if fit.on_fit_end is not None:  # before the refit trains on the validation rows
            fit.on_fit_end()
        if not cfg.refit:
            return
        _begin_refit(fit, run, cfg)
    _epochs(fit, run, cfg, on_epoch, validate=False)


def match_state(fit: Fit, cfg: TrainConfig, phase: str, lr_scale: float) -> None:
    """After a restore that fell back to an earlier checkpoint: the inputs and the learning
    rate of its phase and scale, if they are not those ``fit`` was set up with."""
    state = fit.checkpointer.state
    if state.phase != phase:
        fit.inputs = fit.make_inputs(FIT_ON[state.phase])
    if state.phase != phase or state.lr_scale != lr_scale:
        set_lr_scale(fit, cfg, state.lr_scale)


def _begin_refit(fit: Fit, run: Run, cfg: TrainConfig) -> None:
    """From the fit phase to the refit: from the initial weights and a new optimizer, as
    many epochs as the best epoch's (README, Design: "Refit"); a checkpoint."""
    state = run.state
    state.begin_refit(state.best_epoch + 1)
    fit.inputs = fit.make_inputs(FIT_ON["refit"])
    for i, callback in enumerate(fit.callbacks):
        if isinstance(callback, ProgressBar):
            callback.batches = fit.inputs.train_batches
        if isinstance(callback, keras.callbacks.TensorBoard):
            fit.callbacks[i] = tensorboard(Path(callback.log_dir), "refit")
    if not restart_optimizer(
        fit.model, cfg, fit.strategy, fit.inputs.train_batches, state.lr_scale
    ):
        compile_model(fit.model, cfg, fit.strategy, fit.inputs.train_batches, state.lr_scale)
    fit.model.set_weights(fit.initial_weights())
    log.info(
        "refit: %d epochs on train + validation (%d ratings) from the initial weights",
        state.refit_epochs, fit.inputs.rows["train"],
    )  # fmt: skip
    fit.checkpointer.save()


def _epochs(
    fit: Fit, run: Run, cfg: TrainConfig, on_epoch: OnEpoch | None, *, validate: bool
) -> None:
    """The epochs of the current phase, a checkpoint after each. Fit phase (``validate``):
    until ``cfg.epochs`` or early stopping, the best epoch's weights kept. Refit: its
    ``refit_epochs``. A diverged epoch is trained again from its start at half the
    learning rate (``cflib.train.guard``)."""
    assert cfg.batch_size is not None and cfg.epochs is not None and cfg.patience is not None
    state = run.state
    keras_validates = validate and not fit.validate
    held = HeldValidation.of(fit.model, fit.inputs.held_validation()) if keras_validates else None
    val_ds = fit.inputs.validation() if keras_validates and held is None else None
    most = cfg.epochs if validate else state.refit_epochs
    while state.epoch < most and not (validate and should_stop(state, cfg.patience)):
        fit.checkpointer.stop_if_requested()  # asked between epochs (during validation)
        epoch = state.epoch
        start = guard.Snapshot.take(fit.model, state)
        try:
            logs = _fit_epoch(fit, state, val_ds, validate, held)
            guard.check_epoch(state, logs)
        except guard.Diverged as diverged:
            _recover(fit, cfg, start, diverged)
            continue
        rows = min(fit.timer.batches * cfg.batch_size, fit.inputs.rows["train"])
        improved = state.end_epoch(logs, fit.timer.train_seconds, rows)
        fit.checkpointer.save_epoch(best=improved)
        if on_epoch is not None:
            on_epoch(epoch + 1, most, logs)


def _fit_epoch(
    fit: Fit, state: TrainState, val_ds: Any, validate: bool, held: HeldValidation | None
) -> dict[str, float]:
    """One epoch of ``fit`` from where ``state`` stands; its logs, validation included if
    ``validate`` (by Keras on ``val_ds``, by ``held``, or by ``fit.validate``)."""
    epoch, skip = state.epoch, state.batch
    inputs = fit.inputs
    with fit.strategy.scope(), warnings.catch_warnings():
        # The train split's batch count is left undeclared (see make_dataset), so
        # Keras warns when a one-epoch fit reaches its end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fitted = fit.model.fit(
            inputs.train(epoch, skip),
            validation_data=val_ds,
            initial_epoch=epoch,
            epochs=epoch + 1,
            steps_per_epoch=inputs.train_batches - skip if inputs.cluster else None,
            validation_steps=inputs.val_steps if val_ds is not None else None,
            callbacks=[held, *fit.callbacks] if held is not None else fit.callbacks,
            shuffle=False,  # make_dataset shuffles; Keras cannot shuffle a tf.data.Dataset
            verbose=0,
        )
    logs = {k: v[-1] for k, v in fitted.history.items()}
    if validate and fit.validate is not None:
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
    phase = "refit " if state.phase == "refit" else ""
    where = f"{phase}epoch {diverged.epoch + 1}, batch {diverged.batch}"
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
        "phase": state.phase, "epoch": diverged.epoch + 1, "batch": diverged.batch, "loss": loss,
        "reason": diverged.reason, "learning_rate": lr / 2,
    })  # fmt: skip
    back = f"{phase}epoch {state.epoch + 1}" + (f", batch {state.batch}" if state.batch else "")
    log.warning(
        "training diverged at %s (%s): restarting from %s with the learning rate halved "
        "to %g (restart %d of %d)",
        where, diverged.reason, back, lr / 2, len(state.divergences), guard.MAX_RETRIES,
    )  # fmt: skip
    fit.checkpointer.save()


def should_stop(state: TrainState, patience: int) -> bool:
    """Early stopping: ``patience`` epochs in a row without a better validation RMSE."""
    return state.wait > 0 and state.wait >= patience
