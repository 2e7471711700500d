"""Streaming error metrics: RMSE and MAE, a bootstrap interval, errors by segment, and
the predicted-vs-true rating distribution. Each accumulator takes record batches and
keeps only sums, so the test split never sits in memory whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Rows go to this many random blocks; the bootstrap resamples blocks (rows are shuffled).
BOOTSTRAP_BLOCKS = 1000
BOOTSTRAP_SAMPLES = 2000
#: Lower edges of the activity buckets after 0: ratings per user (items) in the train split.
USER_EDGES = (1, 11, 51, 201, 1001)
ITEM_EDGES = (1, 101, 1001, 10001)


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


class BlockBootstrap:
    """A bootstrap interval for RMSE from per-block sums.

    Each row falls in one of ``blocks`` blocks at random; the interval resamples whole
    blocks with replacement. With shuffled rows and many blocks this matches a row
    bootstrap while keeping only two numbers per block.
    """

    def __init__(self, seed: int, blocks: int = BOOTSTRAP_BLOCKS) -> None:
        self.rng = np.random.default_rng([seed, 7])
        self.sse = np.zeros(blocks)
        self.n = np.zeros(blocks)

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        err = pred.astype(np.float64) - true.astype(np.float64)
        block = self.rng.integers(0, self.sse.size, err.size)
        self.sse += np.bincount(block, err * err, self.sse.size)
        self.n += np.bincount(block, minlength=self.sse.size)

    def interval(self, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES) -> list[float]:
        """The central ``level`` interval of the resampled RMSEs (NaN without rows)."""
        if self.n.sum() == 0:
            return [float("nan"), float("nan")]
        pick = self.rng.integers(0, self.sse.size, (samples, self.sse.size))
        sse, n = self.sse[pick].sum(axis=1), self.n[pick].sum(axis=1)
        values = np.sqrt(sse / np.maximum(n, 1))
        tail = (1 - level) / 2 * 100
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return [float(lo), float(hi)]


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """``["0", "1-10", ..., "1001+"]`` for lower edges ``(1, 11, ..., 1001)``."""
    labels = ["0"]
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        labels.append(f"{lo}+" if hi is None else f"{lo}-{hi - 1}")
    return labels


class Segments:
    """RMSE per activity bucket for several predictors (the model and a baseline)."""

    def __init__(self, edges: Sequence[int], names: Sequence[str]) -> None:
        self.edges = np.asarray(edges)
        self.labels = bucket_labels(edges)
        self.n = np.zeros(len(self.labels))
        self.sse = {name: np.zeros(len(self.labels)) for name in names}

    def add(self, activity: np.ndarray, true: np.ndarray, preds: dict[str, np.ndarray]) -> None:
        bucket = np.searchsorted(self.edges, activity, side="right")
        size = len(self.labels)
        self.n += np.bincount(bucket, minlength=size)
        for name, pred in preds.items():
            err = pred.astype(np.float64) - true.astype(np.float64)
            self.sse[name] += np.bincount(bucket, err * err, size)

    def result(self) -> list[dict[str, Any]]:
        """One row per bucket: ``bucket``, ``rows`` and each predictor's RMSE (None if empty)."""
        rows = []
        for i, label in enumerate(self.labels):
            row: dict[str, Any] = {"bucket": label, "rows": int(self.n[i])}
            for name, sse in self.sse.items():
                row[name] = float(np.sqrt(sse[i] / self.n[i])) if self.n[i] else None
            rows.append(row)
        return rows


class Distribution:
    """Counts of true ratings and of predictions rounded to the nearest rating value."""

    def __init__(self, values: Sequence[float] | np.ndarray) -> None:
        self.values = np.asarray(sorted(values), dtype=np.float64)
        self.true = np.zeros(self.values.size, np.int64)
        self.pred = np.zeros(self.values.size, np.int64)

    def _nearest(self, x: np.ndarray) -> np.ndarray:
        mid = (self.values[1:] + self.values[:-1]) / 2
        return np.searchsorted(mid, x.astype(np.float64))

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        size = self.values.size
        self.true += np.bincount(self._nearest(true), minlength=size)
        self.pred += np.bincount(self._nearest(pred), minlength=size)

    def result(self) -> dict[str, list[Any]]:
        return {
            "values": self.values.tolist(),
            "true": self.true.tolist(),
            "predicted": self.pred.tolist(),
        }
