"""The divergence guard: a training loss that turns non-finite or explodes ends the epoch.

The loss watched is the one Keras reports after every batch: the mean training loss of
the epoch so far. Training has diverged when

- that loss, or the epoch's validation RMSE, is not finite (NaN or infinite); or
- it rose to more than ``DIVERGENCE_FACTOR`` times the lowest loss so far: the lowest
  of the run's epoch losses and of its first batch's loss (the untrained model's, the
  reference during the first epoch). Within an epoch this is checked once the running
  mean covers ``MIN_ROWS`` ratings (a mean over a few small batches is noisy), and at
  the end of every epoch on its whole loss.

The trainer (``cflib.train.epochs``) then restores the weights and optimizer state that
the epoch started from (``Snapshot``), halves the learning rate, logs a warning, writes
a checkpoint and trains the epoch again; ``train.json`` records each divergence. After
``MAX_RETRIES`` restarts, a further divergence ends training with
``cflib.errors.TrainingDiverged``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cflib.train.checkpoint import TrainState

#: A running loss above this multiple of the lowest loss so far is a divergence.
DIVERGENCE_FACTOR = 2.0
#: Restarts with a halved learning rate before a divergence ends training.
MAX_RETRIES = 3
#: Ratings the running loss of an epoch must cover before the factor applies mid-epoch.
MIN_ROWS = 4096


class Diverged(Exception):
    """An epoch diverged (raised inside ``fit``, handled by the trainer).

    Attributes:
        epoch: 0-based epoch.
        batch: batches of the epoch trained when it was noticed (the epoch's count if at
            its end).
        loss: the running loss of the epoch (or the validation RMSE if that is the
            non-finite value).
        reason: what was seen, for the warning.
    """

    def __init__(self, epoch: int, batch: int, loss: float, reason: str) -> None:
        self.epoch, self.batch, self.loss, self.reason = epoch, batch, loss, reason
        super().__init__(f"epoch {epoch + 1}, batch {batch}: {reason}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep the four facts if it is pickled (a chained exception crossing processes).
        return (type(self), (self.epoch, self.batch, self.loss, self.reason))


def reference_loss(state: TrainState) -> float | None:
    """The lowest training loss so far: of the completed epochs and the first batch."""
    seen = [x for x in [*state.history.get("loss", []), state.first_loss] if x is not None]
    return min(seen) if seen else None


def check_loss(loss: float, reference: float | None) -> str | None:
    """Why ``loss`` is a divergence against ``reference`` (``reference_loss``), or None."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if reference is not None and loss > DIVERGENCE_FACTOR * reference:
        return (
            f"the loss rose to {loss:.4g}, over {DIVERGENCE_FACTOR:g} times the lowest so "
            f"far ({reference:.4g})"
        )
    return None


def check_epoch(state: TrainState, logs: dict[str, Any]) -> None:
    """The end-of-epoch check, before ``state.end_epoch`` records ``logs``.

    Raises:
        Diverged: the epoch's loss or validation RMSE diverged.
    """
    val = float(logs.get("val_rmse", 0.0))  # the refit phase does not validate
    reason = check_loss(float(logs["loss"]), reference_loss(state))
    if reason is None and not math.isfinite(val):
        reason = f"the validation RMSE is {val}"
    if reason is not None:
        raise Diverged(state.epoch, state.batch, float(logs["loss"]), reason)


def _scalar(value: Any) -> float:
    # Multi-worker training logs vectors of shape [1] (DotModel.vector_logs).
    return float(np.asarray(value).reshape(-1)[0])


class DivergenceGuard(keras.callbacks.Callback):
    """Raise ``Diverged`` after a batch whose running loss diverged (``check_loss``).

    List it before the ``Checkpointer``: a diverged step then never reaches a checkpoint.
    It records the run's first loss in ``state.first_loss`` (saved with checkpoints).
    """

    def __init__(self, state: TrainState, rows_per_batch: int) -> None:
        super().__init__()
        self.state = state
        self.rows_per_batch = rows_per_batch
        self._batches = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._batches = 0  # each fit is one epoch, or the rest of one

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches = batch + 1  # Keras' count (a call may run several steps)
        loss = _scalar((logs or {}).get("loss", math.nan))
        state = self.state
        if state.first_loss is None and not state.history and math.isfinite(loss):
            state.first_loss = loss
        reference = reference_loss(state)
        if self._batches * self.rows_per_batch < MIN_ROWS:
            reference = None  # too few ratings yet for the factor; non-finite still counts
        reason = check_loss(loss, reference)
        if reason is not None:
            # The Checkpointer counts this batch after the guard: count it here.
            raise Diverged(state.epoch, state.batch + 1, loss, reason)


@dataclass
class Snapshot:
    """The model's and optimizer's variables and the training state at one moment (the
    start of an epoch), in memory, to go back to after a divergence."""

    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    state: TrainState

    @classmethod
    def take(cls, model: keras.Model, state: TrainState) -> Snapshot:
        return cls(
            [np.array(v) for v in model.get_weights()],
            [np.array(v) for v in model.optimizer.variables],
            copy.deepcopy(state),
        )

    def restore(self, model: keras.Model, state: TrainState) -> None:
        """Put the variables back, and make ``state`` (shared with the loop) the saved one."""
        model.set_weights(self.weights)
        for variable, value in zip(model.optimizer.variables, self.optimizer, strict=True):
            variable.assign(value)
        state.assign(copy.deepcopy(self.state))
