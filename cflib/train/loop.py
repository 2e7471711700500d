"""Training one model on an ingested dataset: strategy, fit, checkpoints, the run directory.

A finished run directory holds ``model.keras`` (the refit's, or the best epoch's weights),
``train.json`` (config, data fingerprint, history, timings), ``val_predictions.parquet``
(the best epoch's predictions on the validation rows) and ``logs/`` (TensorBoard). While it
trains, ``checkpoints/`` holds what a restarted run resumes from
(``cflib.train.checkpoint``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cflib import schema
from cflib.config import TrainConfig
from cflib.data import implicit
from cflib.data.manifest import Manifest
from cflib.data.side import SideFeatures, load_side_features
from cflib.fsutil import exclusive, naming
from cflib.logs import stage_logger
from cflib.models.catalog import build_model, resolve_for, spec_of
from cflib.train import guard, stop, tune
from cflib.train.checkpoint import (
    BEST_WEIGHTS,
    CHECKPOINT_DIR,
    LOG_DIR,
    Checkpointer,
    TrainState,
    open_run_dir,
    read_state,
)
from cflib.train.distribute import (
    Cluster,
    DistributedValidation,
    advise_batch,
    check_batch,
    cluster_from_env,
    configure_devices,
    describe,
)
from cflib.train.epochs import (
    FIT_ON,
    Fit,
    OnEpoch,
    Run,
    compile_model,
    match_state,
    tensorboard,
    train_phases,
)
from cflib.train.inputs import TrainInputs
from cflib.train.kept import Kept, hand_over
from cflib.train.keras_strategy import use_scope_strategy
from cflib.train.preflight import trainable_manifest
from cflib.train.progress import EpochLogger, ProgressBar
from cflib.train.summary import train_summary, write_run
from cflib.train.valpred import write_val_predictions

log = stage_logger("train")


def train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    *,
    run_id: str | None = None,
    in_memory: bool = False,
    on_epoch: OnEpoch | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on a dataset's train split, validating every epoch.

    ``cfg`` is first completed with the model's defaults (``resolve``). The optimizer
    (``SparseAdagrad`` by default) minimizes the mean squared error plus the models' L2
    penalty on the batch's table rows. Training stops after ``cfg.patience`` epochs
    without a better validation RMSE, and the best epoch's weights are saved; with
    ``cfg.refit`` (the default) the model is then trained again from its initial weights
    on train + validation for the best epoch's count of epochs, and that is the model
    saved (``cflib.train.epochs``). An epoch whose loss diverges is trained again from
    its start at half the learning rate (``cflib.train.guard``). Every
    ``cfg.checkpoint_steps`` steps and every epoch a checkpoint is written under
    ``out_dir/checkpoints``; called again with the same ``out_dir``, options and data
    after an interruption, training resumes from the last checkpoint, in either phase.

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
        ``val_rmse`` (best), ``history`` (metric -> one value per epoch), ``train_seconds``
        (training steps of each epoch) (all of the fit phase), ``refit`` (``epochs``,
        ``ratings``, ``rmse`` (its last epoch's training RMSE), ``history``,
        ``train_seconds``; null without refit), ``seconds`` (this process),
        ``ratings_per_second`` (training steps of both phases), ``divergences`` (each
        divergence survived: epoch, batch, loss, reason, the learning rate after it),
        ``lr_scale`` (the learning rate's final factor, 1 without divergence), ``resumed``
        (from which epoch and batch, and ``phase: refit`` if in the refit, or null),
        ``input``, ``strategy``, ``replicas``,
        ``workers``, ``devices``, ``tensorflow``, ``keras``.

    Raises:
        DatasetError: the manifest is missing, the train or validation split is empty,
            or ``run_id`` is not a safe directory name.
        TrainingDiverged: training diverged after three restarts at a halved learning
            rate (``cflib.train.guard``); the run directory keeps its last checkpoint.
        ConfigError: another process is training into ``out_dir`` (the chief holds a
            lock on it for the whole run), ``out_dir`` holds other files or another
            run, the model does not fit the dataset, the batch does not split over
            replicas, or ``cfg.replicas`` cannot be applied (see ``configure_devices``).
    """
    start = time.perf_counter()
    data_dir = Path(data_dir).absolute()
    out_dir = Path(out_dir)
    manifest = trainable_manifest(data_dir)
    asked, cfg = cfg, resolve_for(cfg, manifest)  # the search chooses what ``asked`` leaves unset
    cluster = cluster_from_env()
    # One writer per run directory: a second training into it would take the first
    # one's checkpoints for an interrupted run and write over them.
    lock = exclusive(out_dir.absolute(), "--out")
    with lock if cluster is None or cluster.is_chief else contextlib.nullcontext(), naming(out_dir):
        return _train(
            data_dir, out_dir, cfg, manifest, cluster, asked=asked,
            run_id=run_id, in_memory=in_memory, on_epoch=on_epoch, start=start,
        )  # fmt: skip


def _train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    manifest: Manifest,
    cluster: Cluster | None,
    *,
    asked: TrainConfig,
    run_id: str | None,
    in_memory: bool,
    on_epoch: OnEpoch | None,
    start: float,
) -> dict[str, Any]:
    """``train`` once its inputs are checked, holding the run directory's lock."""
    assert cfg.batch_size is not None
    side = _side_features(cfg, manifest, data_dir)
    run = _open_run(out_dir, cfg, manifest, cluster, run_id)
    sets = _implicit_sets(cfg, manifest, data_dir, run)
    strategy = configure_devices(cfg.replicas)
    splits = manifest.splits
    replicas = strategy.num_replicas_in_sync
    check_batch(cfg.batch_size, replicas, splits["train"].rows, splits["validation"].rows)
    advise_batch(strategy, cfg.batch_size, n_users=manifest.n_users, n_items=manifest.n_items)
    request, kept = cfg, Kept()
    with stop.listening():  # a stop request ends the search after its finished trials
        cfg, tuning = _tuned(asked, cfg, manifest, data_dir, run, strategy, side, in_memory, kept)
    assert cfg.batch_size is not None
    keras.utils.set_random_seed(cfg.seed)

    def make_inputs(fit_on: tuple[str, ...]) -> TrainInputs:
        return TrainInputs(manifest, data_dir, cfg, strategy, cluster, in_memory, fit_on)

    def initial_weights() -> list[np.ndarray]:
        """The weights the model was built with (the same seed, the same draws)."""
        keras.utils.set_random_seed(cfg.seed)
        with strategy.scope():
            fresh = build_model(
                cfg, n_users=manifest.n_users, n_items=manifest.n_items,
                global_mean=manifest.global_mean, side=side,
            )  # fmt: skip
        return list(fresh.get_weights())

    # The last checkpoint's phase and rate: restore may fall back to an earlier one.
    phase, lr_scale = run.state.phase, run.state.lr_scale
    inputs = make_inputs(FIT_ON[phase])
    # The chosen trial's model, if kept, for a fit phase that goes on from it (not svdpp's:
    # its trials train without N(u)).
    fresh = sets is None and not run.state.weights
    handed = kept.take(cfg, strategy) if fresh else None
    del kept
    model = handed[0] if handed is not None else None
    if model is None:
        model = _compiled_model(cfg, manifest, strategy, inputs.train_batches, side, lr_scale, sets)
    validate = _for_multi_worker(model, strategy, inputs) if cluster is not None else None
    fit = Fit(
        model, strategy, inputs, validate, _restored_checkpointer(run, model, cfg),
        EpochLogger(cfg.batch_size, run.state), [], make_inputs, initial_weights,
    )  # fmt: skip
    match_state(fit, cfg, phase, lr_scale)

    def write_predictions() -> None:
        """The best epoch's predictions on the validation rows (README, "Blending")."""
        if run.chief:
            model.load_weights(run.ckpt_dir / BEST_WEIGHTS)
            out = run.out_dir / schema.VAL_PREDICTIONS_FILE
            write_val_predictions(model, manifest, data_dir, out)

    fit.on_fit_end = write_predictions
    fit.callbacks = [
        guard.DivergenceGuard(run.state, cfg.batch_size),  # first: before any checkpoint
        fit.checkpointer, fit.timer, *_reporting(run, cfg, fit.inputs.train_batches),
    ]  # fmt: skip
    _log_start(cfg, manifest, run, strategy, model)
    if handed is not None:
        hand_over(model, handed[1], run.state, fit.checkpointer)
    with stop.listening():  # a stop request now ends training with a checkpoint
        train_phases(fit, run, cfg, on_epoch)
    summary = train_summary(run.run_id, cfg, manifest, data_dir, run.state, strategy, cluster)
    summary.update(
        request=request.identity(),
        tuning=tuning,
        seconds=time.perf_counter() - start,
        resumed=run.resumed,
        input="memory" if in_memory else "stream",
    )
    if run.chief:
        write_run(run, model, summary)
    log.info(
        "%s: best epoch %d of %d, validation RMSE %.4f%s, %.1f s",
        run.run_id, summary["best_epoch"], summary["epochs_run"], summary["val_rmse"],
        f", then {summary['refit']['epochs']} on train + validation" if summary["refit"] else "",
        summary["seconds"],
    )  # fmt: skip
    return summary


def _tuned(
    asked: TrainConfig,
    cfg: TrainConfig,
    manifest: Manifest,
    data_dir: Path,
    run: Run,
    strategy: tf.distribute.Strategy,
    side: SideFeatures | None,
    in_memory: bool,
    kept: Kept,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config to train with, after the validation search (``cflib.train.tune``), and
    ``train.json``'s ``tuning``; the best trial's model in ``kept``."""
    skip = None
    if cluster_from_env() is not None:
        skip = "multi-worker training: every worker would have to run the same trials"
    elif run.state.weights and not (run.ckpt_dir / tune.TUNE_FILE).is_file():
        skip = "resumed a run that trained without a search"

    def make_cfg(values: tune.Candidate) -> TrainConfig:
        return resolve_for(asked.model_copy(update=values), manifest)

    def trainer(values: tune.Candidate) -> dict[str, Any]:
        return tune.trial(make_cfg(values), manifest, data_dir, strategy, side, in_memory, kept)

    return tune.choose(asked, cfg, manifest, make_cfg, trainer, ckpt_dir=run.ckpt_dir, skip=skip)


def _side_features(cfg: TrainConfig, manifest: Manifest, data_dir: Path) -> SideFeatures | None:
    """The dataset's side features if the model reads them (before the run dir is made)."""
    if not spec_of(cfg.model).side_features:
        return None
    return load_side_features(data_dir, n_users=manifest.n_users, n_items=manifest.n_items)


def _implicit_sets(
    cfg: TrainConfig, manifest: Manifest, data_dir: Path, run: Run
) -> implicit.ImplicitSets | None:
    """N(u) if the model reads it: cached in the dataset directory, else built there (or
    in the run's checkpoints if the dataset is read-only)."""
    if not spec_of(cfg.model).implicit:
        return None
    start = time.perf_counter()
    sets = implicit.load_or_build(data_dir, manifest, run.ckpt_dir / implicit.CACHE_DIR)
    log.info(
        "N(u): %d (user, item) pairs of %d users (%.1f s)",
        len(sets.items), sets.n_users, time.perf_counter() - start,
    )  # fmt: skip
    return sets


def _open_run(
    out_dir: Path, cfg: TrainConfig, manifest: Manifest, cluster: Cluster | None, run_id: str | None
) -> Run:
    """Create the run directory or find the interrupted run in it; other workers only
    read the chief's state (on a shared filesystem), they never write."""
    chief = cluster is None or cluster.is_chief
    state: TrainState | None
    if chief:
        run_id, state = open_run_dir(
            out_dir, run_id=run_id, cfg=cfg, fingerprint=manifest.fingerprint
        )
    else:
        run_id, state = run_id or "worker", read_state(out_dir / CHECKPOINT_DIR)
    return Run(out_dir, run_id, state or TrainState(), _resumed_at(state), chief)


def _resumed_at(state: TrainState | None) -> dict[str, Any] | None:
    """``train.json``'s ``resumed``: epoch (1-based) and batch, and the phase if refit."""
    if state is None:
        return None
    refit = {"phase": "refit"} if state.phase == "refit" else {}
    return {"epoch": state.epoch + 1, "batch": state.batch, **refit}


def _compiled_model(
    cfg: TrainConfig,
    manifest: Manifest,
    strategy: tf.distribute.Strategy,
    train_batches: int,
    side: SideFeatures | None,
    lr_scale: float,
    sets: implicit.ImplicitSets | None,
) -> keras.Model:
    """The model of ``cfg``, built and compiled in the strategy's scope."""
    with strategy.scope():
        model = build_model(
            cfg, n_users=manifest.n_users, n_items=manifest.n_items,
            global_mean=manifest.global_mean, side=side, implicit=sets,
        )  # fmt: skip
        # XLA cannot reach the variables of other logical devices; see DotModel.call.
        model.xla = strategy.num_replicas_in_sync == 1
    compile_model(model, cfg, strategy, train_batches, lr_scale)
    return model


def _for_multi_worker(
    model: keras.Model, strategy: tf.distribute.Strategy, inputs: TrainInputs
) -> DistributedValidation:
    """Adapt a built model to MultiWorkerMirroredStrategy; its validation over every
    worker's shard."""
    use_scope_strategy(model)  # see cflib.train.keras_strategy
    # Nor can Keras reduce scalar logs across workers (DotModel.train_step, and
    # DistributedValidation).
    model.vector_logs = True
    return DistributedValidation(strategy, inputs.validation(), inputs.val_steps or 1)


def _restored_checkpointer(run: Run, model: keras.Model, cfg: TrainConfig) -> Checkpointer:
    """The checkpoint callback, with the last checkpoint's weights restored into ``model``."""
    checkpointer = Checkpointer(run.ckpt_dir, run.state, cfg.checkpoint_steps, write=run.chief)
    checkpointer.set_model(model)
    checkpointer.restore()  # may fall back to an earlier checkpoint, or start over
    if run.resumed is not None:
        state = run.state
        run.resumed = _resumed_at(state) if state.weights else None
    return checkpointer


def _reporting(run: Run, cfg: TrainConfig, train_batches: int) -> list[keras.callbacks.Callback]:
    """TensorBoard logs (the chief's), and a progress bar on a terminal."""
    assert cfg.batch_size is not None
    callbacks: list[keras.callbacks.Callback] = []
    if run.chief:
        callbacks.append(tensorboard(run.out_dir / LOG_DIR, run.state.phase))
    if sys.stdout.isatty():
        callbacks.append(ProgressBar(train_batches, cfg.batch_size))
    return callbacks


def _log_start(
    cfg: TrainConfig,
    manifest: Manifest,
    run: Run,
    strategy: tf.distribute.Strategy,
    model: keras.Model,
) -> None:
    state = run.state
    row_step = getattr(model, "row_step", None)
    step = "Keras' step" if row_step is None else "the row step"
    if row_step is not None and row_step.fused is not None:
        step = "the fused step (cflib.train.fused)"
    log.info(
        "training %s on %s (%d ratings, %d users, %d items) on %s with %s%s",
        cfg.model, manifest.name, manifest.splits["train"].rows, manifest.n_users,
        manifest.n_items, describe(strategy, cluster_from_env()), step,
        f", resuming at {state.phase} epoch {state.epoch + 1} batch {state.batch}"
        if run.resumed else "",
    )  # fmt: skip
