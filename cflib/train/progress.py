"""What a run shows while it trains: each epoch's line in the log (``EpochLogger``: loss,
RMSEs, ratings/s without the warm-up) and a progress bar on a terminal (``ProgressBar``)."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import keras

from cflib.logs import stage_logger
from cflib.train.checkpoint import TrainState, optimizer_steps

log = stage_logger("train")


#: A step this many times slower than the epoch's median step is warming up (tracing and
#: compiling the step function, again for a last batch of another size; the input
#: pipeline's first reads): its time beyond the median is logged apart.
WARM_UP_FACTOR = 5.0


class EpochLogger(keras.callbacks.Callback):
    """Time the training steps of each epoch; log its loss, RMSEs and ratings/s (and
    which phase it is, from ``state`` when given).

    The first epoch's first step traces and compiles the step function: seconds, against
    milliseconds for the others, which made the first epoch look many times slower than
    it trains (17K ratings/s against 1.3M). So each call of the train function (one step,
    or ``steps_per_execution``) is timed, and the time of the calls much slower than the
    median (``WARM_UP_FACTOR``) beyond the median is logged apart as warm-up and left out
    of ``train_seconds`` and of the ratings/s.
    """

    def __init__(
        self, rows_per_batch: int, state: TrainState | None = None, *, quiet: bool = False
    ) -> None:
        super().__init__()
        self.rows_per_batch = rows_per_batch
        self.state = state
        self.quiet = quiet  # time the epochs, log nothing (a trial's)
        self.train_seconds = 0.0
        self.warm_up_seconds = 0.0
        self.batches = 0
        self._start = 0.0
        self._last = 0.0
        self._steps: list[float] = []
        self._train_end: float | None = None
        self._first_step: int | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = self._last = time.perf_counter()
        self._steps, self._train_end = [], None
        self.batches = 0
        self._first_step = self._optimizer_steps()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        self._steps.append(now - self._last)  # one call: ``steps_per_execution`` steps
        self._last = now
        self.batches = batch + 1

    def _optimizer_steps(self) -> int | None:
        model = self._model
        return None if getattr(model, "optimizer", None) is None else optimizer_steps(model)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._train_end is None:  # during fit, validation starts after training
            self._train_end = time.perf_counter()

    def _timings(self, now: float) -> float:
        """Set ``train_seconds`` and ``warm_up_seconds``; return the ratings/s."""
        total = (self._train_end or now) - self._start
        median = statistics.median(self._steps) if self._steps else 0.0
        slow = [d - median for d in self._steps if d > WARM_UP_FACTOR * median]
        self.warm_up_seconds = sum(slow) if len(slow) < len(self._steps) else 0.0
        self.train_seconds = total - self.warm_up_seconds
        return self.batches * self.rows_per_batch / max(self.train_seconds, 1e-9)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        steps = self._optimizer_steps()
        if steps is not None and self._first_step is not None:
            # Keras' count of the last call is its full ``steps_per_execution``; the
            # optimizer counts the steps run.
            self.batches = steps - self._first_step
        rate = self._timings(now)
        if self.quiet:
            return
        logs = logs or {}
        refit = self.state is not None and self.state.phase == "refit"
        val = "" if "val_rmse" not in logs else f", validation RMSE {logs['val_rmse']:.4f}"
        warm_up = self.warm_up_seconds
        warm = f" (+{warm_up:.1f} s warm-up)" if warm_up >= 0.05 else ""
        # "loss" is what the optimizer minimizes: the squared error plus the L2 penalty, so
        # it can rise while the RMSEs fall; users read the RMSEs.
        log.info(
            "%sepoch %d: loss %.4f (squared error + L2 penalty), RMSE %.4f%s, %.1f s%s, "
            "%.0f ratings/s",
            "refit " if refit else "",
            epoch + 1,
            logs.get("loss", float("nan")),
            logs.get("rmse", float("nan")),
            val,
            now - self._start - warm_up,
            warm,
            rate,
        )


class ProgressBar(keras.callbacks.Callback):
    """A terminal progress bar per epoch with the loss and the ratings per second."""

    def __init__(self, batches: int, rows_per_batch: int) -> None:
        super().__init__()
        self.batches = batches
        self.rows_per_batch = rows_per_batch
        self._bar: keras.utils.Progbar | None = None
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        sys.stdout.write(f"epoch {epoch + 1}\n")
        self._bar = keras.utils.Progbar(self.batches, stateful_metrics=["ratings/s"])
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._bar is None:
            return
        rate = (batch + 1) * self.rows_per_batch / max(time.perf_counter() - self._start, 1e-9)
        values = [(k, float(v)) for k, v in (logs or {}).items() if k in ("loss", "rmse")]
        self._bar.update(batch + 1, values=[*values, ("ratings/s", rate)])
