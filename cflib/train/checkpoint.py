"""Run-directory state while training: checkpoints, resumption, early stopping, progress.

While a run trains, ``RUN/checkpoints/`` holds ``run.json`` (run id, resolved config,
data fingerprint), ``state.json`` (epochs and batches done, history, early-stopping
state, the current checkpoint file) and the weights files it names (model and optimizer
variables). A run started again with the same ``--out`` resumes from ``state.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cflib import schema
from cflib.config import TrainConfig
from cflib.errors import ConfigError
from cflib.logs import stage_logger
from cflib.train import runs, stop

log = stage_logger("train")

CHECKPOINT_DIR = runs.CHECKPOINT_DIR
LOG_DIR = "logs"
RUN_FILE = runs.RUN_FILE
STATE_FILE = "state.json"
#: The checkpoint before the last one, kept to fall back on if the last is unreadable.
PREV_STATE_FILE = "state.prev.json"
BEST_WEIGHTS = "best.weights.h5"


@dataclass
class TrainState:
    """Where training is; saved with every checkpoint.

    Training has two phases: ``fit`` (on the train split, validated every epoch, stopped
    early) and ``refit`` (on train + validation for ``refit_epochs`` epochs, without
    validation). The counters, history and timings are those of the current phase; the
    refit starts them again and keeps the fit phase's in ``validated``.

    Attributes:
        phase: ``fit`` or ``refit``.
        epoch: epochs completed.
        batch: batches of epoch ``epoch`` (0-based) already trained on.
        steps: optimizer steps taken in all.
        history: metric -> one value per completed epoch.
        train_seconds: seconds of training steps per completed epoch, warm-up
            (compilation: ``EpochLogger``) left out.
        best_epoch: 0-based epoch of the best validation RMSE (-1: none yet).
        best_val_rmse: that RMSE.
        wait: epochs since the best one.
        weights: the checkpoint's weights file, relative to the checkpoint directory.
        rows_trained: ratings trained on, over the completed epochs.
        first_loss: the loss of the run's first batch (``cflib.train.guard``).
        lr_scale: the factor of the learning rate, halved at each divergence.
        divergences: each divergence: phase, epoch (1-based), batch, loss, reason and
            the learning rate after it.
        refit_epochs: epochs of the refit phase (0 before it).
        validated: the fit phase's ``epochs_run``, ``best_epoch`` (1-based),
            ``val_rmse``, ``history``, ``train_seconds`` and ``rows_trained``, once the
            refit has started.
    """

    phase: str = "fit"
    epoch: int = 0
    batch: int = 0
    steps: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_rmse: float = math.inf
    wait: int = 0
    weights: str | None = None
    rows_trained: int = 0
    first_loss: float | None = None
    lr_scale: float = 1.0
    divergences: list[dict[str, Any]] = field(default_factory=list)
    refit_epochs: int = 0
    validated: dict[str, Any] | None = None

    def assign(self, other: TrainState) -> None:
        """Make this state (shared by the loop and the callbacks) equal to ``other``."""
        for key, value in asdict(other).items():
            setattr(self, key, value)

    def end_epoch(self, logs: dict[str, Any], seconds: float, rows: int) -> bool:
        """Record a finished epoch's metrics; return whether its validation RMSE is the
        best (never, in the refit phase: it has no validation)."""
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.train_seconds.append(seconds)
        self.rows_trained += rows
        self.epoch += 1
        self.batch = 0
        if "val_rmse" not in logs:
            return False
        val = float(logs["val_rmse"])
        improved = val < self.best_val_rmse
        if improved:
            self.best_epoch, self.best_val_rmse, self.wait = self.epoch - 1, val, 0
        else:
            self.wait += 1
        return improved

    def fit_results(self) -> dict[str, Any]:
        """The fit phase's results: ``validated`` once the refit has started."""
        return self.validated or {
            "epochs_run": self.epoch,
            "best_epoch": self.best_epoch + 1,
            "val_rmse": self.best_val_rmse,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "rows_trained": self.rows_trained,
        }

    def begin_refit(self, epochs: int) -> None:
        """End the fit phase (its results go to ``validated``); the refit's counters start."""
        self.validated = self.fit_results()
        self.phase, self.refit_epochs = "refit", epochs
        self.epoch, self.batch, self.history, self.train_seconds = 0, 0, {}, []
        self.rows_trained, self.first_loss = 0, None


def open_run_dir(
    out_dir: Path, *, run_id: str | None, cfg: TrainConfig, fingerprint: str
) -> tuple[str, TrainState | None]:
    """Create the run directory, or find the interrupted run in it to resume.

    Args:
        out_dir: ``--out``.
        run_id: ``--run-id``, or None for a new time-based id (or the resumed run's).
        cfg: the resolved config; a resumed run must have been started with the same.
        fingerprint: the dataset's fingerprint; likewise.

    Returns:
        The run id and the state to resume from (None for a fresh start).

    Raises:
        ConfigError: ``out_dir`` holds a finished run, another run, or other files.
    """
    ckpt = out_dir / CHECKPOINT_DIR
    if (out_dir / schema.TRAIN_SUMMARY_FILE).exists():
        raise ConfigError(f"--out {out_dir}: already holds a finished run")
    if (ckpt / RUN_FILE).is_file():
        started = json.loads((ckpt / RUN_FILE).read_text())
        if started["config"] != cfg.identity() or started["data_fingerprint"] != fingerprint:
            raise ConfigError(
                f"--out {out_dir}: holds an interrupted run with other options or data; "
                "resume it with the same options, or choose another --out"
            )
        if run_id and run_id != started["run_id"]:
            raise ConfigError(f"--run-id {run_id}: --out {out_dir} is run {started['run_id']}")
        return str(started["run_id"]), read_state(ckpt)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"--out {out_dir}: already exists and is not empty")
    run_id = runs.check_name(run_id, "--run-id") if run_id else runs.new_run_id()
    ckpt.mkdir(parents=True, exist_ok=True)
    runs.write_json(
        ckpt / RUN_FILE,
        {"run_id": run_id, "config": cfg.identity(), "data_fingerprint": fingerprint},
    )
    return run_id, None


def _load_state(path: Path) -> TrainState | None:
    try:
        return TrainState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        if path.exists():
            log.warning("%s is unreadable (%s)", path, exc)
        return None


def read_state(ckpt: Path) -> TrainState | None:
    """The last checkpoint's state, else the one before it (a damaged state file)."""
    return _load_state(ckpt / STATE_FILE) or _load_state(ckpt / PREV_STATE_FILE)


def optimizer_steps(model: keras.Model) -> int:
    """The optimizer's step count (``iterations``)."""
    return int(np.asarray(keras.ops.convert_to_numpy(model.optimizer.iterations)))


class Checkpointer(keras.callbacks.Callback):
    """Save weights and ``state.json`` every ``every_steps`` steps, and on demand.

    Each checkpoint is a new weights file, named in ``state.json`` (written through a
    rename) before the previous file is deleted: a process killed at any moment leaves
    a complete checkpoint behind. ``write=False`` (a non-chief worker) counts but writes
    nothing.
    """

    def __init__(
        self, directory: Path, state: TrainState, every_steps: int, *, write: bool = True
    ) -> None:
        super().__init__()
        self.directory = directory
        self.state = state
        self.every_steps = every_steps
        self.write = write
        self._first_batch = 0
        self._best = False  # see save_epoch

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._first_batch = self.state.batch  # the batches a resumed epoch skipped
        self._first_step = optimizer_steps(self.model)
        self._done = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Counted from the optimizer: with ``steps_per_execution`` a call may run several
        # steps, and the epoch's last call fewer than Keras' ``batch`` says.
        done = optimizer_steps(self.model) - self._first_step
        before = self.state.steps
        self.state.batch = self._first_batch + done
        self.state.steps += done - self._done
        self._done = done
        if self.every_steps and self.state.steps // self.every_steps > before // self.every_steps:
            self.save()
        self.stop_if_requested()

    def stop_if_requested(self) -> None:
        """If a stop was requested (``cflib.train.stop``), write a checkpoint and raise.

        Raises:
            TrainingInterrupted: a stop was requested; the checkpoint is written.
        """
        reason = stop.requested()
        if reason is None:
            return
        self.save()
        log.warning("training stops (%s) at epoch %d, batch %d", reason, self.state.epoch + 1,
                    self.state.batch)  # fmt: skip
        raise stop.TrainingInterrupted(reason, self.state.weights)

    def save_epoch(self, best: bool) -> None:
        """``save`` at an epoch's end; if the epoch is the ``best`` so far, ``BEST_WEIGHTS``
        too: a copy of the checkpoint's weights file, made before the state names it."""
        self._best = best
        try:
            self.save()
        finally:
            self._best = False

    def save(self) -> None:
        """Write a checkpoint of the model, its optimizer and the state.

        The previous checkpoint stays (``state.prev.json`` and its weights) until the next
        one is complete: if the last is damaged, ``restore`` falls back on it.
        """
        if not self.write:
            return
        # The refit starts at the fit phase's last step, and after a divergence the step
        # count goes back to where the epoch started: phase and restarts keep names new.
        restarts = len(self.state.divergences)
        refit = "-refit" if self.state.phase == "refit" else ""
        name = f"ckpt-{self.state.steps:09d}{refit}{f'-r{restarts}' if restarts else ''}.weights.h5"
        fresh = name != self.state.weights  # else no step since: the weights are those named
        if fresh:
            self.model.save_weights(self.directory / name)
        if self._best:  # a copy: Keras' save_weights takes 30-70 ms here, a copy about 1 ms
            shutil.copyfile(self.directory / name, self.directory / f"{BEST_WEIGHTS}.tmp")
            os.replace(self.directory / f"{BEST_WEIGHTS}.tmp", self.directory / BEST_WEIGHTS)
        if not fresh:
            return
        current = self.directory / STATE_FILE
        if current.is_file():
            os.replace(current, self.directory / PREV_STATE_FILE)
        self.state.weights = name
        runs.write_json(current, asdict(self.state))
        keep = {name, *(s.weights for s in [_load_state(self.directory / PREV_STATE_FILE)] if s)}
        for old in self.directory.glob("ckpt-*.weights.h5"):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def restore(self) -> None:
        """Load the last checkpoint into the (compiled) model and its optimizer.

        A checkpoint whose weights do not load (truncated, corrupt, missing) is skipped
        with a warning for the one before it, whose state then replaces ``self.state``;
        with neither readable, training starts over.
        """
        if not self.state.weights:
            return
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        candidates = [self.state, _load_state(self.directory / PREV_STATE_FILE)]
        for state in candidates:
            if state is None or not state.weights:
                continue
            try:
                self.model.load_weights(self.directory / state.weights)
            except Exception as exc:  # h5py and Keras raise several types for a bad file
                log.warning("checkpoint %s is unreadable (%s); falling back to the one "
                            "before it", state.weights, exc)  # fmt: skip
                continue
            self.state.assign(state)
            log.info("resumed from %s: epoch %d, batch %d", state.weights,
                     self.state.epoch + 1, self.state.batch)  # fmt: skip
            return
        log.warning("no readable checkpoint in %s: training starts over", self.directory)
        self.state.assign(TrainState())
