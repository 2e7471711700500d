"""Test-split metrics for a trained model and the baselines users compare it with.

Everything streams over the Parquet parts in record batches: the test split and the
two passes over the train split that fit the bias baseline never sit in memory whole.
Besides RMSE and MAE: a bootstrap 95% interval, the rows whose user or item has no
training rating (scored all the same, and counted apart), errors by user activity and
item popularity, the predicted-vs-true rating distribution and, for Netflix, the
predictions for ``qualifying.txt`` in the Prize's submission format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cflib import schema
from cflib.config import EvaluateConfig
from cflib.data.manifest import Manifest, load_manifest
from cflib.errors import DatasetError
from cflib.evaluate import blend
from cflib.evaluate.metrics import (
    ITEM_EDGES,
    USER_EDGES,
    BlockBootstrap,
    Distribution,
    ErrorSums,
    Segments,
)
from cflib.evaluate.metrics import rmse as rmse
from cflib.logs import stage_logger
from cflib.train import runs

log = stage_logger("evaluate")

#: Shrinkage of the damped-mean bias baseline (ratings' worth of prior at the mean).
ITEM_DAMPING = 25.0
USER_DAMPING = 10.0
BASELINES = ("global_mean", "random", "weighted_sampling", "majority_class", "user_item_bias")
#: Cinematch's RMSE on the real probe set, the Prize's reference point (Bennett & Lanning 2007).
CINEMATCH_PROBE_RMSE = 0.9514
SUBMISSION_FILE = "qualifying_predictions.txt"


def iter_columns(
    paths: Sequence[Path], columns: Sequence[str], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Stream the given columns of Parquet parts as numpy arrays, a record batch at a time."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
            yield {c: batch.column(c).to_numpy() for c in columns}


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
        self.low, self.high = manifest.rating_range  # every prediction is clipped to it
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
        self.user_n, self.item_n = user_n, item_n  # training ratings per user and item
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
            return np.clip(pred, self.low, self.high)
        raise ValueError(f"`name` should be one of {BASELINES}. Received: `name` = {name!r}.")

    def fallback(
        self, user: np.ndarray, user_known: np.ndarray, item: np.ndarray, item_known: np.ndarray
    ) -> np.ndarray:
        """The damped biases for pairs whose user or item the dataset does not know:
        the global mean plus whichever of the two biases is known."""
        pred = np.full(user.size, self.mu)
        pred[user_known] += self.user_bias[user[user_known]]
        pred[item_known] += self.item_bias[item[item_known]]
        return np.clip(pred, self.low, self.high)


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

    Returns:
        ``run_id``, ``model``, ``dataset``, ``rmse``, ``mae``, ``rmse_ci95`` ([low,
        high], bootstrap), ``n_test``, ``cold`` (rows whose user or item has no training
        rating: ``rows``, ``rmse``, ``mae``), ``val_rmse``, ``oracle_rmse``,
        ``cinematch_rmse`` (Netflix probe split only), ``baselines`` (name -> rmse,
        mae), ``segments`` (``user_activity`` and ``item_popularity``: per bucket of
        training ratings, rows and the RMSE of the model and of the bias baseline),
        ``distribution`` (counts of true and predicted ratings), ``qualifying`` (rows
        and file of the Netflix submission, or None), ``rating_range`` (the training
        ratings' lowest and highest, which every prediction is clipped to) and ``seconds``.
    """
    run = Path(run)
    summary = runs.train_summary(run)
    data = Path(summary["data_dir"])
    manifest = load_manifest(data)
    if manifest.splits["test"].rows == 0:
        raise DatasetError(f"{data}: the test split is empty; there is nothing to evaluate")
    if manifest.fingerprint != summary["data_fingerprint"]:
        log.warning("%s changed since %s was trained on it", data, run)
    predict = predictor(run, manifest.rating_range)
    start = time.perf_counter()
    baselines = Baselines(manifest, data, seed=cfg.seed, batch_size=cfg.batch_size)
    score = _Scores(baselines, cfg.seed)
    for b in iter_columns(
        manifest.split_paths(data, "test"), ("user", "item", "rating"), cfg.batch_size
    ):
        score.add(predict(b["user"], b["item"]), b)
    oracle = _oracle(manifest)
    metrics: dict[str, Any] = {
        "run_id": summary["run_id"],
        "model": summary["model"],
        "dataset": summary["dataset"],
        **score.result(),
        "val_rmse": summary.get("val_rmse"),
        "oracle_rmse": oracle,
        # Cinematch's figure is of the real probe set: beside generated data (which has
        # a planted oracle instead) it would mislead.
        "cinematch_rmse": (
            CINEMATCH_PROBE_RMSE
            if manifest.split == "probe" and manifest.source.format == "netflix" and oracle is None
            else None
        ),
        "qualifying": None,
        "rating_range": list(manifest.rating_range),
        "config": cfg.identity(),
    }
    if manifest.qualifying_rows and (data / schema.QUALIFYING_FILE).is_file():
        from cflib.evaluate.submission import write_submission

        rows = write_submission(
            data / schema.QUALIFYING_FILE,
            run / SUBMISSION_FILE,
            predict,
            baselines.fallback,
            cfg.batch_size,
        )
        metrics["qualifying"] = {"rows": rows, "file": SUBMISSION_FILE}
    metrics["seconds"] = time.perf_counter() - start
    runs.write_json(run / schema.METRICS_FILE, metrics)
    return metrics


def predictor(
    run: Path, scale: tuple[float, float]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The run's predictions for dense ids, clipped to ``scale`` (the training ratings'
    lowest and highest): its Keras model, or for a blend (``cflib.evaluate.blend``) its
    components' models, combined."""
    from cflib.models.io import load_model  # TensorFlow loads only when a model is scored.

    spec = blend.read_spec(run)
    if spec is None:
        model = load_model(run / schema.MODEL_FILE)
        return lambda user, item: _predict(model, user, item, scale)
    models = [load_model(Path(c["run"]) / schema.MODEL_FILE) for c in spec["components"]]

    def blended(user: np.ndarray, item: np.ndarray) -> np.ndarray:
        preds = [_predict(m, user, item, scale) for m in models]
        return np.clip(blend.combine(spec, preds), *scale)

    return blended


def _predict(
    model: Any, user: np.ndarray, item: np.ndarray, scale: tuple[float, float]
) -> np.ndarray:
    """The model's predictions for dense ids, clipped to ``scale``."""
    pred = np.asarray(model.predict_on_batch({"user": user, "item": item}))
    return np.clip(pred.reshape(-1), *scale)


class _Scores:
    """Every test metric, accumulated a record batch at a time."""

    def __init__(self, baselines: Baselines, seed: int) -> None:
        self.baselines = baselines
        self.sums = {name: ErrorSums() for name in ("model", *BASELINES)}
        self.cold = ErrorSums()
        self.boot = BlockBootstrap(seed)
        names = ("model", "user_item_bias")
        self.users = Segments(USER_EDGES, names)
        self.items = Segments(ITEM_EDGES, names)
        self.dist = Distribution(baselines.values)

    def add(self, pred: np.ndarray, b: dict[str, np.ndarray]) -> None:
        user, item, true = b["user"], b["item"], b["rating"]
        base = {name: self.baselines.predict(name, user, item) for name in BASELINES}
        self.sums["model"].add(pred, true)
        for name in BASELINES:
            self.sums[name].add(base[name], true)
        self.boot.add(pred, true)
        user_n, item_n = self.baselines.user_n[user], self.baselines.item_n[item]
        cold = (user_n == 0) | (item_n == 0)
        self.cold.add(pred[cold], true[cold])
        pair = {"model": pred, "user_item_bias": base["user_item_bias"]}
        self.users.add(user_n, true, pair)
        self.items.add(item_n, true, pair)
        self.dist.add(pred, true)

    def result(self) -> dict[str, Any]:
        model = self.sums["model"].result()
        return {
            "rmse": model["rmse"],
            "mae": model["mae"],
            "rmse_ci95": self.boot.interval(),
            "n_test": self.sums["model"].n,
            "cold": {"rows": self.cold.n, **self.cold.result()},
            "baselines": {name: self.sums[name].result() for name in BASELINES},
            "segments": {
                "user_activity": self.users.result(),
                "item_popularity": self.items.result(),
            },
            "distribution": self.dist.result(),
        }
