"""Metrics on hand-computed arrays and baselines on a tiny dataset with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib import evaluate, report
from cflib.config import IngestConfig
from cflib.dataset import load_manifest
from cflib.ingest.parallel import ingest_local


def test_error_sums_match_hand_computed() -> None:
    sums = evaluate.ErrorSums()
    sums.add(np.array([3.0, 4.0]), np.array([1.0, 4.0]))
    sums.add(np.array([5.0]), np.array([4.0]))
    result = sums.result()
    assert result["rmse"] == pytest.approx(np.sqrt((4 + 0 + 1) / 3))
    assert result["mae"] == pytest.approx((2 + 0 + 1) / 3)
    assert evaluate.rmse(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(np.sqrt(2.5))
    assert np.isnan(evaluate.ErrorSums().result()["rmse"])


def test_baselines_on_tiny_dataset(netflix_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    ingest_local(netflix_dir, out, IngestConfig(validation_fraction=0.01))
    manifest = load_manifest(out)
    train = pq.read_table(manifest.split_paths(out, "train")[0]).to_pylist()
    base = evaluate.Baselines(manifest, out, seed=0, batch_size=2)

    ratings = [r["rating"] for r in train]
    mu = sum(ratings) / len(ratings)
    assert base.mu == pytest.approx(mu)
    values, counts = np.unique(ratings, return_counts=True)
    assert base.values.tolist() == values.tolist()
    assert base.majority == values[np.argmax(counts)]
    for item in range(manifest.n_items):
        resid = [r["rating"] - mu for r in train if r["item"] == item]
        expected = sum(resid) / (len(resid) + evaluate.ITEM_DAMPING)
        assert base.item_bias[item] == pytest.approx(expected)
    for user in range(manifest.n_users):
        resid = [r["rating"] - mu - base.item_bias[r["item"]] for r in train if r["user"] == user]
        expected = sum(resid) / (len(resid) + evaluate.USER_DAMPING)
        assert base.user_bias[user] == pytest.approx(expected)

    user, item = np.array([0, 1]), np.array([2, 0])
    assert base.predict("global_mean", user, item).tolist() == [mu, mu]
    pred = base.predict("user_item_bias", user, item)
    assert pred[0] == pytest.approx(mu + base.user_bias[0] + base.item_bias[2])
    sampled = base.predict("weighted_sampling", np.zeros(500, int), np.zeros(500, int))
    assert set(sampled.tolist()) <= set(values.tolist())
    with pytest.raises(ValueError, match="`name`"):
        base.predict("nope", user, item)


def test_results_table_orders_baselines() -> None:
    metrics = {
        "model": "biased-mf",
        "rmse": 0.85,
        "mae": 0.66,
        "oracle_rmse": 0.8,
        "baselines": {
            "random": {"rmse": 1.9, "mae": 1.5},
            "global_mean": {"rmse": 1.1, "mae": 0.9},
        },
    }
    rows = report.results_table(metrics)
    assert [r[0] for r in rows] == ["biased-mf (this run)", "global mean", "random (uniform stars)"]
    text = report.format_table(metrics)
    assert "0.8500" in text and "oracle" in text


def test_oracle_is_reported_only_against_the_probe_split(netflix_dir: Path, tmp_path: Path) -> None:
    (netflix_dir / "truth.json").write_text('{"oracle_rmse_probe": 0.79}')
    ingest_local(netflix_dir, tmp_path / "probe", IngestConfig())
    ingest_local(netflix_dir, tmp_path / "random", IngestConfig(split="random"))
    assert evaluate._oracle(load_manifest(tmp_path / "probe")) == 0.79
    assert evaluate._oracle(load_manifest(tmp_path / "random")) is None
