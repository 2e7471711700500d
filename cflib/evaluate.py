"""Test-split metrics for a trained model and the baselines users compare it with.

Everything streams over the Parquet parts in record batches: the test split and the
two passes over the train split that fit the bias baseline never sit in memory whole.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cflib import runs, schema
from cflib.config import EvaluateConfig
from cflib.dataset import Manifest, load_manifest
from cflib.errors import DatasetError

log = logging.getLogger(__name__)

#: Shrinkage of the damped-mean bias baseline (ratings' worth of prior at the mean).
ITEM_DAMPING = 25.0
USER_DAMPING = 10.0
BASELINES = ("global_mean", "random", "weighted_sampling", "majority_class", "user_item_bias")


def iter_columns(
    paths: Sequence[Path], columns: Sequence[str], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Stream the given columns of Parquet parts as numpy arrays, a record batch at a time."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
            yield {c: batch.column(c).to_numpy() for c in columns}


class ErrorSums:
    """Running sums for RMSE and MAE."""

    def __init__(self) -> None:
        self.sse = 0.0
        self.sae = 0.0
        self.n = 0

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        err = pred.astype(np.float64) - true.astype(np.float64)
        self.sse += float(np.dot(err, err))
        self.sae += float(np.abs(err).sum())
        self.n += int(err.size)

    def result(self) -> dict[str, float]:
        if self.n == 0:
            return {"rmse": float("nan"), "mae": float("nan")}
        return {"rmse": (self.sse / self.n) ** 0.5, "mae": self.sae / self.n}


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error of two equal-length arrays."""
    sums = ErrorSums()
    sums.add(np.asarray(pred), np.asarray(true))
    return sums.result()["rmse"]


class Baselines:
    """The baselines, fitted by streaming over the train split.

    Args:
        manifest: the dataset's manifest.
        root: the dataset directory.
        seed: seed of the two sampling baselines.
        batch_size: rows per record batch read.
    """

    def __init__(self, manifest: Manifest, root: Path, *, seed: int, batch_size: int) -> None:
        self.mu = manifest.global_mean
        paths = manifest.split_paths(root, "train")
        cols = ("user", "item", "rating")
        item_sum = np.zeros(manifest.n_items)
        item_n = np.zeros(manifest.n_items)
        counts: dict[float, int] = {}
        for b in iter_columns(paths, cols, batch_size):
            # float64: a Python float does not promote float32 arrays under NumPy 2.
            b["rating"] = b["rating"].astype(np.float64)
            item_sum += np.bincount(b["item"], b["rating"] - self.mu, manifest.n_items)
            item_n += np.bincount(b["item"], minlength=manifest.n_items)
            values, n = np.unique(b["rating"], return_counts=True)
            for v, c in zip(values.tolist(), n.tolist(), strict=True):
                counts[v] = counts.get(v, 0) + c
        self.item_bias = item_sum / (item_n + ITEM_DAMPING)
        user_sum = np.zeros(manifest.n_users)
        user_n = np.zeros(manifest.n_users)
        for b in iter_columns(paths, cols, batch_size):
            resid = b["rating"].astype(np.float64) - self.mu - self.item_bias[b["item"]]
            user_sum += np.bincount(b["user"], resid, manifest.n_users)
            user_n += np.bincount(b["user"], minlength=manifest.n_users)
        self.user_bias = user_sum / (user_n + USER_DAMPING)
        self.values = np.array(sorted(counts), dtype=np.float64)
        freq = np.array([counts[v] for v in sorted(counts)], dtype=np.float64)
        self.probs = freq / freq.sum()
        self.majority = float(self.values[np.argmax(freq)])
        self.rng = np.random.default_rng(seed)

    def predict(self, name: str, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """One baseline's predictions for a batch of dense (user, item) pairs."""
        n = user.size
        if name == "global_mean":
            return np.full(n, self.mu)
        if name == "random":
            return self.rng.choice(self.values, size=n)
        if name == "weighted_sampling":
            return self.rng.choice(self.values, size=n, p=self.probs)
        if name == "majority_class":
            return np.full(n, self.majority)
        if name == "user_item_bias":
            pred = self.mu + self.user_bias[user] + self.item_bias[item]
            return np.clip(pred, schema.RATING_MIN, schema.RATING_MAX)
        raise ValueError(f"`name` should be one of {BASELINES}. Received: `name` = {name!r}.")


def _oracle(manifest: Manifest) -> float | None:
    """The planted model's probe RMSE, when the source was made by ``cfpipe synth`` and the
    test split is its probe set (the figure says nothing about another test split)."""
    truth = Path(manifest.source.path) / "truth.json"
    if manifest.split != "probe" or not truth.is_file():
        return None
    try:
        return float(json.loads(truth.read_text())["oracle_rmse_probe"])
    except (ValueError, KeyError, TypeError):
        log.warning("%s: unreadable, no oracle RMSE reported", truth)
        return None


def evaluate(run: Path, cfg: EvaluateConfig) -> dict[str, Any]:
    """Score a trained run on every test row; write and return ``RUN/metrics.json``.

    Args:
        run: the run directory written by ``cfpipe train``.
        cfg: evaluation options.
    """
    from cflib.train import load_model  # TensorFlow loads only when a model is scored.

    run = Path(run)
    summary = runs.train_summary(run)
    data = Path(summary["data_dir"])
    manifest = load_manifest(data)
    if manifest.splits["test"].rows == 0:
        raise DatasetError(f"{data}: the test split is empty; there is nothing to evaluate")
    if manifest.fingerprint != summary["data_fingerprint"]:
        log.warning("%s changed since %s was trained on it", data, run)
    model = load_model(run / schema.MODEL_FILE)
    start = time.perf_counter()
    baselines = Baselines(manifest, data, seed=cfg.seed, batch_size=cfg.batch_size)
    sums = {name: ErrorSums() for name in ("model", *BASELINES)}
    paths = manifest.split_paths(data, "test")
    for b in iter_columns(paths, ("user", "item", "rating"), cfg.batch_size):
        pred = np.asarray(model.predict_on_batch({"user": b["user"], "item": b["item"]}))
        pred = np.clip(pred.reshape(-1), schema.RATING_MIN, schema.RATING_MAX)
        sums["model"].add(pred, b["rating"])
        for name in BASELINES:
            sums[name].add(baselines.predict(name, b["user"], b["item"]), b["rating"])
    result = sums["model"].result()
    metrics: dict[str, Any] = {
        "run_id": summary["run_id"],
        "model": summary["model"],
        "dataset": summary["dataset"],
        "rmse": result["rmse"],
        "mae": result["mae"],
        "n_test": sums["model"].n,
        "val_rmse": summary.get("val_rmse"),
        "oracle_rmse": _oracle(manifest),
        "baselines": {name: sums[name].result() for name in BASELINES},
        "seconds": time.perf_counter() - start,
    }
    runs.write_json(run / schema.METRICS_FILE, metrics)
    return metrics
