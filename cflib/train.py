"""Training one model on an ingested dataset: strategy, fit, checkpoints, the run directory.

A finished run directory holds ``model.keras`` (the best epoch's weights), ``train.json``
(config, data fingerprint, history, timings) and ``logs/`` (TensorBoard). While it
trains, ``checkpoints/`` holds what a restarted run resumes from (``cflib.checkpoint``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import cflib.models  # noqa: F401  (registers the model classes for load_model)
from cflib import runs, schema
from cflib.checkpoint import (
    BEST_WEIGHTS,
    CHECKPOINT_DIR,
    LOG_DIR,
    Checkpointer,
    EpochLogger,
    ProgressBar,
    TrainState,
    open_run_dir,
    read_state,
)
from cflib.config import TrainConfig
from cflib.data.side import load_side_features
from cflib.data.tfdata import make_dataset, memory_dataset
from cflib.dataset import Manifest, load_manifest
from cflib.distribute import (
    Cluster,
    DistributedValidation,
    cluster_from_env,
    configure_devices,
    device_names,
)
from cflib.errors import ConfigError, DatasetError
from cflib.fsutil import exclusive, naming
from cflib.models.losses import squared_error
from cflib.models.registry import build_model, resolve
from cflib.optim import make_optimizer

log = logging.getLogger(__name__)

# Kept importable from here: tests and callers configured devices through cflib.train.
__all__ = ["configure_devices", "load_model", "train"]


class _Inputs:
    """The train and validation datasets of one strategy (sharded per worker if any)."""

    def __init__(
        self,
        manifest: Manifest,
        root: Path,
        cfg: TrainConfig,
        strategy: tf.distribute.Strategy,
        cluster: Cluster | None,
        in_memory: bool,
    ) -> None:
        assert cfg.batch_size is not None
        self.paths = {s: manifest.split_paths(root, s) for s in ("train", "validation")}
        self.rows = {s: manifest.splits[s].rows for s in ("train", "validation")}
        self.batch = cfg.batch_size
        self.seed = cfg.seed
        self.strategy = strategy
        self.cluster = cluster
        self.in_memory = in_memory
        self.replicas = strategy.num_replicas_in_sync
        # With replicas, drop the short last batch: it splits unevenly (or leaves a
        # replica empty); the order is reshuffled, so other rows are dropped each epoch.
        self.drop = self.replicas > 1
        if cluster is not None or in_memory:
            self.train_batches = self.rows["train"] // self.batch
        else:
            n = self.rows["train"] / self.batch
            self.train_batches = int(n) if self.drop else -(-self.rows["train"] // self.batch)
        self.val_steps = max(self.rows["validation"] // self.batch, 1) if cluster else None
        self._memory: tf.data.Dataset | None = None

    def train(self, epoch: int, skip: int) -> Any:
        """The batches of one epoch, from batch ``skip`` on."""
        if self.in_memory:
            if self._memory is None:
                self._memory = memory_dataset(
                    self.paths["train"], batch_size=self.batch, shuffle=True, seed=self.seed
                )
            return self._memory.skip(skip)
        return self._make("train", shuffle=True, epoch=epoch, skip=skip)

    def validation(self) -> Any:
        return self._make("validation", shuffle=False, epoch=0, skip=0)

    def _make(self, split: str, *, shuffle: bool, epoch: int, skip: int) -> Any:
        if self.cluster is None:
            return make_dataset(
                self.paths[split], batch_size=self.batch, shuffle=shuffle, seed=self.seed,
                drop_remainder=self.drop, epoch=epoch, skip=skip,
                cardinality=split != "train",  # see make_dataset
            )  # fmt: skip

        def per_worker(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            ds = make_dataset(
                self.paths[split], batch_size=ctx.get_per_replica_batch_size(self.batch),
                shuffle=shuffle, seed=self.seed, drop_remainder=True, epoch=epoch, skip=skip,
                shard=(ctx.input_pipeline_id, ctx.num_input_pipelines),
            )  # fmt: skip
            options = tf.data.Options()
            policy = tf.data.experimental.AutoShardPolicy.OFF  # sharded by make_dataset
            options.experimental_distribute.auto_shard_policy = policy
            return ds.with_options(options)

        return self.strategy.distribute_datasets_from_function(per_worker)


def train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    *,
    run_id: str | None = None,
    in_memory: bool = False,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on a dataset's train split, validating every epoch.

    ``cfg`` is first completed with the model's defaults (``resolve``). The optimizer
    (``SparseAdagrad`` by default) minimizes the mean squared error plus the models' L2
    penalty on the batch's table rows. Training stops after ``cfg.patience`` epochs
    without a better validation RMSE, and the best epoch's weights are saved. Every
    ``cfg.checkpoint_steps`` steps and every epoch a checkpoint is written under
    ``out_dir/checkpoints``; called again with the same ``out_dir``, options and data
    after an interruption, training resumes from the last checkpoint.

    Args:
        data_dir: a dataset directory written by ``cfpipe ingest``.
        out_dir: the run directory: new or empty, or an interrupted run to resume.
        cfg: training options.
        run_id: the run's id (default: a new UTC timestamp plus 6 hex digits).
        in_memory: read the train split into memory instead of streaming it (for
            benchmarks on data that fits; drops the last partial batch).
        on_epoch: called after each epoch with (epochs done, most epochs, its logs),
            e.g. to show progress in the Prefect UI.

    Returns:
        The content of ``out_dir/train.json``: ``run_id``, ``model``, ``config``
        (resolved), ``dataset``, ``data_dir``, ``data_fingerprint``, ``n_users``,
        ``n_items``, ``global_mean``, ``epochs_run``, ``best_epoch`` (1-based),
        ``val_rmse`` (best), ``history`` (metric -> one value per epoch), ``seconds``
        (this process), ``ratings_per_second`` (training steps only),
        ``train_seconds`` (training steps of each epoch), ``resumed``
        (from which epoch and batch, or null), ``input``, ``strategy``, ``replicas``,
        ``workers``, ``devices``, ``tensorflow``, ``keras``.

    Raises:
        DatasetError: the manifest is missing, the train or validation split is empty,
            or ``run_id`` is not a safe directory name.
        ConfigError: another process is training into ``out_dir`` (the chief holds a
            lock on it for the whole run), ``out_dir`` holds other files or another
            run, the model does not fit the dataset, the batch does not split over
            replicas, or ``cfg.replicas`` cannot be applied (see ``configure_devices``).
    """
    start = time.perf_counter()
    data_dir = Path(data_dir).absolute()
    out_dir = Path(out_dir)
    manifest = load_manifest(data_dir)
    for split in ("train", "validation"):
        if split not in manifest.splits or manifest.splits[split].rows == 0:
            raise DatasetError(f"{data_dir}: the {split} split is empty; nothing to train on")
    cfg = resolve(cfg)
    cluster = cluster_from_env()
    # One writer per run directory: a second training into it would take the first
    # one's checkpoints for an interrupted run and write over them.
    lock = exclusive(out_dir.absolute(), "--out")
    with lock if cluster is None or cluster.is_chief else contextlib.nullcontext(), naming(out_dir):
        return _train(
            data_dir, out_dir, cfg, manifest, cluster,
            run_id=run_id, in_memory=in_memory, on_epoch=on_epoch, start=start,
        )  # fmt: skip


def _train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    manifest: Manifest,
    cluster: Cluster | None,
    *,
    run_id: str | None,
    in_memory: bool,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None,
    start: float,
) -> dict[str, Any]:
    """``train`` once its inputs are checked, holding the run directory's lock."""
    assert cfg.batch_size is not None and cfg.learning_rate is not None
    side = None
    if cfg.model == "two-tower":
        side = load_side_features(data_dir, n_users=manifest.n_users, n_items=manifest.n_items)
    chief = cluster is None or cluster.is_chief
    if chief:
        run_id, state = open_run_dir(
            out_dir, run_id=run_id, cfg=cfg, fingerprint=manifest.fingerprint
        )
    else:  # other workers read the chief's state (a shared filesystem) but never write
        run_id, state = _peek_run(out_dir, run_id)
    resumed = None if state is None else {"epoch": state.epoch + 1, "batch": state.batch}
    state = state or TrainState()

    strategy = configure_devices(cfg.replicas)
    replicas = strategy.num_replicas_in_sync
    _check_batch(cfg.batch_size, replicas, manifest.splits["train"].rows)
    keras.utils.set_random_seed(cfg.seed)
    inputs = _Inputs(manifest, data_dir, cfg, strategy, cluster, in_memory)
    with strategy.scope():
        model = build_model(
            cfg, n_users=manifest.n_users, n_items=manifest.n_items,
            global_mean=manifest.global_mean, side=side,
        )  # fmt: skip
        # XLA cannot reach the variables of other logical devices; see DotModel.call.
        model.xla = replicas == 1
        model.compile(
            optimizer=make_optimizer(cfg, cfg.learning_rate, inputs.train_batches),
            loss=squared_error,  # not MeanSquaredError: see cflib.models.losses
            metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
            jit_compile=False,  # the model compiles its own arithmetic (DotModel.call)
        )
    validate = None
    if cluster is not None:
        # Keras 3.15 averages the first batch of a distributed dataset over replicas to
        # build the model symbolically, which fails on dict inputs. The model is built
        # already; without a recorded strategy Keras takes the scope's (fit runs in it).
        model._distribute_strategy = None
        # Nor can it reduce scalar logs across workers (DotModel.train_step, and
        # DistributedValidation).
        model.vector_logs = True
        validate = DistributedValidation(strategy, inputs.validation(), inputs.val_steps or 1)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    checkpointer = Checkpointer(ckpt_dir, state, cfg.checkpoint_steps, write=chief)
    checkpointer.set_model(model)
    checkpointer.restore()  # may fall back to an earlier checkpoint, or start over
    if resumed is not None:
        resumed = {"epoch": state.epoch + 1, "batch": state.batch} if state.weights else None
    timer = EpochLogger(cfg.batch_size)
    callbacks: list[keras.callbacks.Callback] = [checkpointer, timer]
    if chief:
        callbacks.append(
            keras.callbacks.TensorBoard(out_dir / LOG_DIR, write_graph=False, profile_batch=0)
        )
    if sys.stdout.isatty():
        callbacks.append(ProgressBar(inputs.train_batches, cfg.batch_size))
    log.info(
        "training %s on %s (%d ratings, %d users, %d items) with %s over %d replica(s)%s",
        cfg.model, manifest.name, manifest.splits["train"].rows, manifest.n_users,
        manifest.n_items, type(strategy).__name__, replicas,
        f", resuming at epoch {state.epoch + 1} batch {state.batch}" if resumed else "",
    )  # fmt: skip
    val_ds = None if validate else inputs.validation()
    while state.epoch < cfg.epochs and not _should_stop(state, cfg.patience):
        epoch, skip = state.epoch, state.batch
        with strategy.scope(), warnings.catch_warnings():
            # The train split's batch count is left undeclared (see make_dataset), so
            # Keras warns when a one-epoch fit reaches its end.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            fitted = model.fit(
                inputs.train(epoch, skip),
                validation_data=None if validate else val_ds,
                initial_epoch=epoch,
                epochs=epoch + 1,
                steps_per_epoch=inputs.train_batches - skip if cluster else None,
                validation_steps=None if validate else inputs.val_steps,
                callbacks=callbacks,
                shuffle=False,  # make_dataset shuffles; Keras cannot shuffle a tf.data.Dataset
                verbose=0,
            )
        rows = min(timer.batches * cfg.batch_size, manifest.splits["train"].rows)
        logs = {k: v[-1] for k, v in fitted.history.items()}
        if validate is not None:
            with strategy.scope():
                logs.update(validate(model))
            log.info(
                "epoch %d: val_rmse %.4f over every worker's shard", epoch + 1, logs["val_rmse"]
            )
        if state.end_epoch(logs, timer.train_seconds, rows) and chief:
            model.save_weights(ckpt_dir / BEST_WEIGHTS)
        checkpointer.save()
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, logs)
    summary = _summary(run_id, cfg, manifest, data_dir, state, strategy, cluster)
    summary.update(
        seconds=time.perf_counter() - start,
        resumed=resumed,
        input="memory" if in_memory else "stream",
    )
    if chief:
        model.load_weights(ckpt_dir / BEST_WEIGHTS)
        tmp = out_dir / f".tmp-{schema.MODEL_FILE}"  # renamed: never a half-written model
        model.save(tmp)
        os.replace(tmp, out_dir / schema.MODEL_FILE)
        runs.write_json(out_dir / schema.TRAIN_SUMMARY_FILE, summary)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    log.info(
        "%s: best epoch %d of %d, validation RMSE %.4f, %.1f s",
        run_id, summary["best_epoch"], summary["epochs_run"], summary["val_rmse"],
        summary["seconds"],
    )  # fmt: skip
    return summary


def _should_stop(state: TrainState, patience: int) -> bool:
    """Early stopping: ``patience`` epochs in a row without a better validation RMSE."""
    return state.wait > 0 and state.wait >= patience


def _check_batch(batch_size: int, replicas: int, train_rows: int) -> None:
    """The global batch must split evenly, and fill every replica at least once."""
    if batch_size % replicas:
        raise ConfigError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    if train_rows < batch_size and replicas > 1:
        raise ConfigError(
            f"--batch-size {batch_size} is larger than the {train_rows} training ratings; "
            f"with {replicas} replicas every batch must be full"
        )


def _peek_run(out_dir: Path, run_id: str | None) -> tuple[str, TrainState | None]:
    """A non-chief worker's view of the chief's run directory."""
    return run_id or "worker", read_state(out_dir / CHECKPOINT_DIR)


def _summary(
    run_id: str,
    cfg: TrainConfig,
    manifest: Manifest,
    data_dir: Path,
    state: TrainState,
    strategy: tf.distribute.Strategy,
    cluster: Cluster | None,
) -> dict[str, Any]:
    """``train.json`` without the timings of this process."""
    return {
        "run_id": run_id,
        "model": cfg.model,
        "config": cfg.model_dump(),
        "dataset": manifest.name,
        "data_dir": str(data_dir),
        "data_fingerprint": manifest.fingerprint,
        "n_users": manifest.n_users,
        "n_items": manifest.n_items,
        "global_mean": manifest.global_mean,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch + 1,
        "val_rmse": state.best_val_rmse,
        "history": state.history,
        "ratings_per_second": state.rows_trained / max(sum(state.train_seconds), 1e-9),
        "train_seconds": state.train_seconds,
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy.
        "strategy": "MultiWorkerMirroredStrategy" if cluster else type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "workers": cluster.workers if cluster else 1,
        "devices": device_names(strategy),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


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
