"""``train.json``: what a finished run records about its training; the finished run written."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from cflib import schema
from cflib.config import TrainConfig
from cflib.data.manifest import Manifest
from cflib.models.average import refit_average
from cflib.models.io import save_model
from cflib.train import runs
from cflib.train.checkpoint import BEST_WEIGHTS, TrainState
from cflib.train.distribute import Cluster, describe, device_names

if TYPE_CHECKING:
    from cflib.train.epochs import Run


def _fit_phase(state: TrainState) -> dict[str, Any]:
    """``train.json``'s figures of the fit phase, and the speed over both phases."""
    fit = state.fit_results()
    rows, seconds = fit["rows_trained"], sum(fit["train_seconds"])
    if state.validated is not None:
        rows, seconds = rows + state.rows_trained, seconds + sum(state.train_seconds)
    return {
        "epochs_run": fit["epochs_run"],
        "best_epoch": fit["best_epoch"],
        "val_rmse": fit["val_rmse"],
        "history": fit["history"],
        "ratings_per_second": rows / max(seconds, 1e-9),
        "train_seconds": fit["train_seconds"],
    }


def _refit_phase(state: TrainState, manifest: Manifest) -> dict[str, Any] | None:
    """``train.json``'s ``refit`` (the phase that trained the run's model), or None."""
    if state.validated is None:
        return None
    return {
        "epochs": state.epoch,
        "ratings": manifest.splits["train"].rows + manifest.splits["validation"].rows,
        "rmse": state.history["rmse"][-1] if state.history.get("rmse") else None,
        "history": state.history,
        "train_seconds": state.train_seconds,
    }


def train_summary(
    run_id: str,
    cfg: TrainConfig,
    manifest: Manifest,
    data_dir: Path,
    state: TrainState,
    strategy: tf.distribute.Strategy,
    cluster: Cluster | None,
) -> dict[str, Any]:
    """``train.json`` without the timings of this process (``cflib.train.loop.train``)."""
    return {
        "run_id": run_id,
        "model": cfg.model,
        "config": cfg.identity(),
        "dataset": manifest.name,
        "data_dir": str(data_dir),
        "data_fingerprint": manifest.fingerprint,
        "n_users": manifest.n_users,
        "n_items": manifest.n_items,
        "global_mean": manifest.global_mean,
        **_fit_phase(state),
        "refit": _refit_phase(state, manifest),
        "divergences": state.divergences,
        "lr_scale": state.lr_scale,
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy.
        "strategy": "MultiWorkerMirroredStrategy" if cluster else type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "placement": describe(strategy, cluster),
        "workers": cluster.workers if cluster else 1,
        "devices": device_names(strategy),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_run(run: Run, model: keras.Model, summary: dict[str, Any]) -> None:
    """The finished run: its model (the refit's averaged with the best epoch's where the
    model has that form, else the refit's, else the best epoch's), ``train.json``;
    checkpoints removed."""
    if run.state.phase == "fit":
        model.load_weights(run.ckpt_dir / BEST_WEIGHTS)
    elif (joined := refit_average(model, run.ckpt_dir / BEST_WEIGHTS)) is not None:
        model = joined
        summary["refit"]["averaged"] = {"embedding_dim": joined.embedding_dim}
    model.before_save()
    save_model(model, run.out_dir / schema.MODEL_FILE)
    runs.write_json(run.out_dir / schema.TRAIN_SUMMARY_FILE, summary)
    shutil.rmtree(run.ckpt_dir, ignore_errors=True)
