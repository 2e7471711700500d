"""Training one model on an ingested dataset: devices, strategy, fit, and the run directory.

A run directory holds ``model.keras`` (the best epoch's weights) and ``train.json``
(config, data fingerprint, history, timings). It is built in a staging directory next
to ``out_dir`` and renamed into place only when training succeeded.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import cflib.models  # noqa: F401  (registers the model classes for load_model)
from cflib import fsutil, runs, schema
from cflib.config import TrainConfig
from cflib.data.side import load_side_features
from cflib.data.tfdata import make_dataset
from cflib.dataset import load_manifest
from cflib.errors import ConfigError, DatasetError
from cflib.models.losses import squared_error
from cflib.models.registry import build_model, resolve
from cflib.optim import make_optimizer, steps

log = logging.getLogger(__name__)


def configure_devices(replicas: int) -> tf.distribute.Strategy:
    """Pick the distribution strategy and, on CPU, split the processor into replicas.

    With GPUs, a ``MirroredStrategy`` over all of them (``replicas`` is ignored). Without,
    ``replicas > 1`` splits the CPU into that many logical devices and mirrors over
    them: this tests the distributed code path on a laptop, but on 2 cores it trains
    about 2x slower than one replica. ``replicas == 1`` on CPU returns the default
    strategy: a ``MirroredStrategy`` over the one CPU device only adds per-step overhead.

    Logical devices can only be configured before the TensorFlow runtime starts, that
    is, before the first op runs in the process.

    Args:
        replicas: CPU replicas when there is no GPU (``--replicas``).

    Raises:
        ConfigError: ``replicas`` is not positive, or TensorFlow already started in
            this process with another number of logical CPUs.
    """
    if replicas <= 0:
        raise ConfigError(f"--replicas should be a positive integer. Received: {replicas}.")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas not in (1, len(gpus)):
            log.warning("--replicas %d ignored: mirroring over all %d GPUs", replicas, len(gpus))
        return tf.distribute.MirroredStrategy()
    if replicas == 1:
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError as exc:  # the runtime is already initialized
        have = len(tf.config.list_logical_devices("CPU"))
        if have != replicas:
            raise ConfigError(
                f"--replicas {replicas}: TensorFlow already started in this process with "
                f"{have} logical CPU device(s); --replicas must be set before TensorFlow "
                "starts (run the training in a fresh process)"
            ) from exc
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def train(
    data_dir: Path, out_dir: Path, cfg: TrainConfig, *, run_id: str | None = None
) -> dict[str, Any]:
    """Train ``cfg.model`` on a dataset's train split, validating every epoch.

    Adam at ``cfg.learning_rate`` minimizes the mean squared error plus the models'
    L2 penalty on the batch's embedding rows. Training stops after ``cfg.patience``
    epochs without a better validation RMSE, and the best epoch's weights are saved.

    Args:
        data_dir: a dataset directory written by ``cfpipe ingest``.
        out_dir: the run directory to create; it must not exist or be empty.
        cfg: training options.
        run_id: the run's id (default: a new UTC timestamp plus 6 hex digits).

    Returns:
        The content of ``out_dir/train.json``: ``run_id``, ``model``, ``config``,
        ``dataset``, ``data_dir``, ``data_fingerprint``, ``n_users``, ``n_items``,
        ``global_mean``, ``epochs_run``, ``best_epoch`` (1-based), ``val_rmse`` (best),
        ``history`` (metric -> one value per epoch), ``seconds`` (whole fit),
        ``ratings_per_second`` (training steps only, validation excluded),
        ``strategy``, ``replicas``, ``devices``, ``tensorflow``, ``keras``.

    Raises:
        DatasetError: the manifest is missing, the train or validation split is empty,
            or ``run_id`` is not a safe directory name.
        ConfigError: ``out_dir`` is not empty, the batch does not split over replicas,
            or ``cfg.replicas`` cannot be applied (see ``configure_devices``).
    """
    data_dir = Path(data_dir).absolute()
    out_dir = Path(out_dir)
    manifest = load_manifest(data_dir)
    for split in ("train", "validation"):
        if split not in manifest.splits or manifest.splits[split].rows == 0:
            raise DatasetError(f"{data_dir}: the {split} split is empty; nothing to train on")
    run_id = runs.check_name(run_id, "--run-id") if run_id else runs.new_run_id()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"--out {out_dir}: already exists and is not empty")

    cfg = resolve(cfg)
    assert cfg.batch_size is not None and cfg.learning_rate is not None
    side = None
    if cfg.model == "two-tower":
        side = load_side_features(data_dir, n_users=manifest.n_users, n_items=manifest.n_items)
    strategy = configure_devices(cfg.replicas)
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    train_rows = manifest.splits["train"].rows
    if train_rows < cfg.batch_size and replicas > 1:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the {train_rows} training ratings; "
            f"with {replicas} replicas every batch must be full"
        )
    keras.utils.set_random_seed(cfg.seed)
    # With replicas, drop the short last batch: it splits unevenly (or leaves a replica
    # empty); the order is reshuffled, so different rows are dropped each epoch.
    train_ds = make_dataset(
        manifest.split_paths(data_dir, "train"),
        batch_size=cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        drop_remainder=replicas > 1,
    )
    val_ds = make_dataset(
        manifest.split_paths(data_dir, "validation"),
        batch_size=cfg.batch_size,
        shuffle=False,
        seed=cfg.seed,
    )
    with strategy.scope():
        model = build_model(
            cfg,
            n_users=manifest.n_users,
            n_items=manifest.n_items,
            global_mean=manifest.global_mean,
            side=side,
        )
        model.xla = replicas == 1
        model.compile(
            optimizer=make_optimizer(cfg, cfg.learning_rate, steps(train_rows, cfg.batch_size)),
            loss=squared_error,  # not MeanSquaredError: see cflib.models.losses
            metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
            # XLA doubles CPU throughput with one replica (0.45 -> 0.9 M ratings/s, dim
            # 64); across logical CPU replicas it fails to reach the other device's
            # variables, so there Keras decides (XLA on GPUs, none on CPUs).
            jit_compile=False,
        )
    rows_per_epoch = (train_rows // cfg.batch_size * cfg.batch_size) if replicas > 1 else train_rows
    timer = EpochLogger(rows_per_epoch)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_rmse", mode="min", patience=cfg.patience, restore_best_weights=True
    )
    log.info(
        "training %s on %s (%d ratings, %d users, %d items) with %s over %d replica(s)",
        cfg.model,
        manifest.name,
        train_rows,
        manifest.n_users,
        manifest.n_items,
        type(strategy).__name__,
        replicas,
    )
    with fsutil.atomic_dir(out_dir) as staged:
        start = time.perf_counter()
        fitted = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            callbacks=[timer, stopper],
            shuffle=False,  # make_dataset shuffles; Keras cannot shuffle a tf.data.Dataset
            verbose=1 if sys.stdout.isatty() else 0,
        )
        seconds = time.perf_counter() - start
        history = {k: [float(v) for v in vs] for k, vs in fitted.history.items()}
        val = history["val_rmse"]
        best = min(range(len(val)), key=val.__getitem__)
        summary: dict[str, Any] = {
            "run_id": run_id,
            "model": cfg.model,
            "config": cfg.model_dump(),
            "dataset": manifest.name,
            "data_dir": str(data_dir),
            "data_fingerprint": manifest.fingerprint,
            "n_users": manifest.n_users,
            "n_items": manifest.n_items,
            "global_mean": manifest.global_mean,
            "epochs_run": len(val),
            "best_epoch": best + 1,
            "val_rmse": val[best],
            "history": history,
            "seconds": seconds,
            "ratings_per_second": rows_per_epoch * len(val) / max(sum(timer.train_seconds), 1e-9),
            "strategy": type(strategy).__name__,
            "replicas": replicas,
            "devices": _devices(strategy),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }
        model.save(staged / schema.MODEL_FILE)
        (staged / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "%s: best epoch %d of %d, validation RMSE %.4f, %.1f s",
        run_id,
        best + 1,
        len(val),
        val[best],
        seconds,
    )
    return summary


def load_model(path: Path) -> keras.Model:
    """Load a saved ``model.keras`` in safe mode (no arbitrary code).

    The loaded model's ``predict_on_batch({"user": int32[B], "item": int32[B]})``
    returns a float32 array of shape ``[B]``, not clipped to the rating scale.

    Raises:
        DatasetError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no saved model; is it the --out of `cfpipe train`?")
    return keras.saving.load_model(path, safe_mode=True)


def _devices(strategy: tf.distribute.Strategy) -> list[str]:
    """Names of the devices the replicas run on."""
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        # The default strategy runs on the first logical device (CPU:0 without GPUs).
        return [tf.config.list_logical_devices()[0].name]
    return list(strategy.extended.worker_devices)


class EpochLogger(keras.callbacks.Callback):
    """Log each epoch's losses, RMSEs, seconds and training ratings per second."""

    def __init__(self, rows_per_epoch: int) -> None:
        super().__init__()
        self.rows_per_epoch = rows_per_epoch
        self.train_seconds: list[float] = []
        self._epoch_start = 0.0
        self._train_end: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        # During fit, validation starts when the epoch's training steps are done.
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        train_s = (self._train_end or now) - self._epoch_start
        self.train_seconds.append(train_s)
        logs = logs or {}
        log.info(
            "epoch %d: loss %.4f rmse %.4f val_rmse %.4f, %.1f s, %.0f ratings/s",
            epoch + 1,
            logs.get("loss", float("nan")),
            logs.get("rmse", float("nan")),
            logs.get("val_rmse", float("nan")),
            now - self._epoch_start,
            self.rows_per_epoch / max(train_s, 1e-9),
        )
